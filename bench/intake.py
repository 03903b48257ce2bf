"""Intake at scale: executions per data file and per batch, and steps per run.

    .venv/bin/python -m bench.intake [--quick]

- `executions_per_data_file`, `executions_per_batch`: 5 jobs declared for one client; the
  notification prefixes the stack declares (`inputs/_ready/<job>/`, one per job, prefix
  match as Cloud Storage applies it) decide which uploads publish to an intake topic; each
  message is one execution of that topic's one trigger. (Counted on the layout, not on a
  running local cloud: see bench/RESULTS.md.)
- `steps_per_run` at 10, 1,000 and 100,000 files (`--quick`: 10, 100, 1,000): the deployed
  workflow source executed in workflows-emulator against a stateful fake of the APIs
  (bench/workflow_fake.py, which the tests share), counting executed steps.

Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse

from bench._common import emit, machine


def executions(files: int, jobs: int) -> dict[str, float]:
    """Uploads of `files` data files and one marker per job's batch, against the
    notification configurations the stack declares for a client with `jobs` jobs."""
    from stacks.layout import TenancyLayout

    lay = TenancyLayout("p")
    names = [f"job{i}" for i in range(jobs)]
    # The prefixes `ClientOnboarding._add_job` declares: one notification per job.
    prefixes = {job: lay.job_markers(job) for job in names}
    uploads = [lay.batch_inputs(job, "b1") + f"{k}.jsonl" for job in names
               for k in range(files // jobs)]
    markers = [lay.marker(job, "b1") for job in names]

    def runs(name: str) -> int:
        return sum(name.startswith(p) for p in prefixes.values())
    return {"executions_per_data_file": sum(map(runs, uploads)) / len(uploads),
            "executions_per_batch": sum(map(runs, markers)) / len(markers)}


def steps_per_run(n: int) -> int:
    from bench.workflow_fake import FakeCloud, StepCounter, execute, marker_event, params

    cloud, counter = FakeCloud(), StepCounter()
    gen = cloud.put("p-dev-acme", "inputs/_ready/embed/b", {"count": n})
    execute(params(), marker_event("p-dev-acme", "inputs/_ready/embed/b", gen), cloud, counter)
    return counter.steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes")
    a = p.parse_args()
    emit("intake", "machine", **machine())
    emit("intake", "executions", jobs=5, **executions(1000 if a.quick else 100_000, 5))
    for n in ((10, 100, 1000) if a.quick else (10, 1000, 100_000)):
        emit("intake", "steps", files=n, steps_per_run=steps_per_run(n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
