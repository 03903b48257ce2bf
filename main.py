#!/usr/bin/env python
"""The CDK app: one platform stack per environment declared in environments.yaml (or the file
GPUB_ENVIRONMENTS names).

Run directly (`.venv/bin/python main.py`) or through `cdktn synth` / `cdktf synth`; all three
write `cdktf.out/stacks/<stack>/cdk.tf.json` and `cdktf.out/jobs/<stack>/<job>.json`.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from jobs import one_line
from stacks.app import synth
from stacks.environments import load_environments


def main() -> int:
    try:
        envs = load_environments()
        synth(envs)
    except (ValidationError, ValueError) as exc:
        print(f"synth: {one_line(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
