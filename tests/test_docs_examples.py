"""Every ```python block in README.md and docs/*.md runs as-is from the repository root.

A block whose first line is `# doc: no-run` is skipped (sketches, snippets that need
credentials, servers or more than a few seconds). Each block runs in a fresh interpreter,
`.venv/bin/python -c <block>` with the repository root as the working directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_RUN = "# doc: no-run"
TIMEOUT_S = 120
# An opening fence (up to 3 spaces of indent) naming python, up to the matching closing fence.
FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,})[ \t]*python[ \t]*\n"
    r"(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in pages if p.is_file()]


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(1-based line of the opening fence, code) of every ```python block."""
    blocks = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        lines = [line[indent:] if line[:indent].isspace() else line
                 for line in m["body"].splitlines()]  # fmt: skip
        blocks.append((text.count("\n", 0, m.start()) + 1, "\n".join(lines) + "\n"))
    return blocks


def collect() -> list[Any]:
    params = []
    for page in doc_pages():
        rel = page.relative_to(ROOT).as_posix()
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            first = code.lstrip("\n").split("\n", 1)[0].strip()
            if first == NO_RUN:
                continue
            params.append(pytest.param(rel, line, code, id=f"{rel}:{line}"))
    return params


def interpreter() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else sys.executable


def test_fence_parser() -> None:
    text = "x\n```python\nprint(1)\n```\n\n```bash\nls\n```\n  ```python\n  a = 1\n  ```\n"
    assert python_blocks(text) == [(2, "print(1)\n"), (9, "a = 1\n")]


@pytest.mark.parametrize(("page", "line", "code"), collect())
def test_python_block_runs(page: str, line: int, code: str) -> None:
    try:
        out = subprocess.run(
            [interpreter(), "-c", code],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{page}:{line}: the block ran over {TIMEOUT_S} s; mark it `{NO_RUN}`")
    assert out.returncode == 0, (
        f"{page}:{line}: the block exited {out.returncode} "
        f"(fix it, or make `{NO_RUN}` its first line)\n{out.stderr[-3000:]}"
    )
