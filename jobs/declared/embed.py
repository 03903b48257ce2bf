"""`embed`: GPU sentence embeddings of JSON-lines text, written as Parquet.

One L4 per VM (g2-standard-8). Spot in dev, standard in prod (the default GPU rule), so it
retries on preemption in dev.
"""

from jobs.spec import GpuSpec, JobSpec

SPEC = JobSpec(
    name="embed",
    image="images/embed:1.0.0",  # entrypoint is the image's: python -m gpub_runner
    machine_type="g2-standard-8",
    gpus=GpuSpec(type="nvidia-l4", count=1),
    cpu_milli=7000,
    memory_mib=28672,
    boot_disk_gb=100,
    max_run_duration_s=2 * 3600,
    max_parallelism=4,  # 4 L4 at peak: sizes the environment's GPU quota preference
    input_format="jsonl",
    files_per_task=20,
    file_timeout_s=600,
    failure_budget=0.05,
    batch_size=256,
    handler="embed_handler:process",  # writes one Parquet file of embeddings per input
)
