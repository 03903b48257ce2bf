"""A short human summary of a synthesized stack: resources by type."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table


def resource_counts(stack_file: Path) -> Counter[str]:
    doc = json.loads(stack_file.read_text())
    return Counter({rtype: len(items) for rtype, items in doc.get("resource", {}).items()})


def summary_table(outdir: Path) -> Table:
    stack_files = sorted((outdir / "stacks").glob("*/cdk.tf.json"))
    counts = {f.parent.name: resource_counts(f) for f in stack_files}
    table = Table(title="Synthesized stacks: resources by type")
    table.add_column("resource type")
    for stack in counts:
        table.add_column(stack, justify="right")
    for rtype in sorted(set().union(*counts.values()) if counts else []):
        table.add_row(rtype, *(str(c.get(rtype, 0) or "-") for c in counts.values()))
    table.add_row("[b]total", *(f"[b]{sum(c.values())}" for c in counts.values()))
    return table


def main() -> None:
    Console().print(summary_table(Path("cdktf.out")))


if __name__ == "__main__":
    main()
