"""Text that misleads: the code and docs cite no tracker the repository does not contain
(issue numbers) and no design file it does not have. The change log and the benchmark record
are history and may name the issues they closed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HISTORY = {"CHANGELOG.md", "bench/RESULTS.md"}
ISSUE = re.compile(r"(?<!provider )\bissues? \d+\b", re.IGNORECASE)


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.yaml", "*.yml", "bin/*"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [f for f in out.split() if not f.startswith("tests/") and f not in HISTORY]


def test_no_issue_numbers_or_missing_design_file_in_code_and_docs() -> None:
    found = []
    for name in _tracked():
        path = REPO / name
        if not path.is_file():
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if ISSUE.search(line) or "DESIGN.md" in line:
                found.append(f"{name}:{no}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
