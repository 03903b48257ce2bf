"""`bin/submit` with the dev `uppercase` job given the fields in $GPUB_TEST_LADDER (JSON:
ladder, candidate_regions, max_retry_count...): the declared job of the capacity benchmark
(bench/capacity.py) and tests (tests/test_capacity_e2e.py), without editing the project's
environments.

    GPUB_TEST_LADDER='{"ladder": [...]}' .venv/bin/python -m bench.capacity_submit uppercase ...
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def patched_environments(fields: dict[str, Any]) -> list[Any]:
    from jobs.spec import JobSpec
    from stacks.environments import load_environments

    fields = dict(fields)
    # The environment's guardrails allow the candidate regions unless the test says otherwise.
    allowed = fields.pop("_allowed_regions", None) or fields.get("candidate_regions")
    out = []
    for env in load_environments():
        if env.name == "dev":
            jobs = [JobSpec.model_validate(j.model_dump() | fields) if j.name == "uppercase"
                    else j for j in env.jobs]
            guardrails = env.guardrails.model_copy(update={"allowed_regions": list(allowed)}
                                                   ) if allowed else env.guardrails
            env = env.model_copy(update={"jobs": jobs, "guardrails": guardrails})
        out.append(env)
    return out


def main() -> None:
    from submit import synth
    from submit.cli import main as submit_main

    fields = json.loads(os.environ["GPUB_TEST_LADDER"])
    synth.environments = lambda: {e.name: e for e in patched_environments(fields)}
    sys.argv = ["submit", *sys.argv[1:]]
    submit_main()


if __name__ == "__main__":
    main()
