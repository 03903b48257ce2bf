"""`uppercase`: a tiny CPU job for the demo (upper-cases JSON-lines text)."""

from jobs.spec import JobSpec

SPEC = JobSpec(
    name="uppercase",
    image="images/uppercase:1.0.0",  # entrypoint is the image's: python -m gpub_runner
    machine_type="e2-standard-2",
    cpu_milli=1000,
    memory_mib=1024,
    max_run_duration_s=1800,
    max_retry_count=1,
    max_parallelism=10,
    input_format="jsonl",
    files_per_task=10,
    file_timeout_s=60,
    failure_budget=0.1,
    batch_size=100,
    handler="uppercase_handler:process",
)
