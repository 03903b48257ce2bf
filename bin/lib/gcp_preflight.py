"""Before `cdktn diff|deploy|destroy|output`: are there Google credentials? One line if not.

Terraform's GCS state backend and the Google provider both read Application Default
Credentials (https://cloud.google.com/docs/authentication/application-default-credentials);
without them `cdktn` fails deep inside `terraform init` with a Node stack trace.
Exit 0: found; 2: none (the message says what to do).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "diff"
    try:
        import google.auth
        from google.auth import exceptions

        google.auth.default()
    except exceptions.DefaultCredentialsError:
        sys.stderr.write(
            f"cdktn {command}: no Google credentials (Application Default Credentials); run "
            "`gcloud auth application-default login`, or in CI authenticate with Workload "
            "Identity Federation (docs/operations.md). `bin/cdktn synth` and `bin/check` "
            "need none.\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
