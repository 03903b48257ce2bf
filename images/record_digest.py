"""Read and write images/versions.json for images/build.sh (stdlib only).

    python images/record_digest.py version NAME            -> prints NAME's version
    python images/record_digest.py digest NAME REGISTRY    -> prints the recorded digest, or ""
    python images/record_digest.py record NAME REGISTRY sha256:...   -> records it
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "versions.json"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def main(argv: list[str]) -> int:
    data = json.loads(VERSIONS.read_text(encoding="utf-8"))
    images = data["images"]
    command, name, *rest = argv
    if name not in images:
        sys.stderr.write(f"images/versions.json: no image named {name!r} "
                         f"(known: {', '.join(sorted(images))})\n")
        return 2
    entry = images[name]
    if command == "version":
        print(entry["version"])
    elif command == "digest":
        print(entry.get("digests", {}).get(rest[0], ""))
    elif command == "record":
        registry, digest = rest
        if not DIGEST_RE.match(digest):
            sys.stderr.write(f"not an image digest: {digest!r}\n")
            return 2
        entry.setdefault("digests", {})[registry] = digest
        VERSIONS.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        sys.stderr.write(f"unknown command {command!r}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
