"""A short human summary of a synthesized stack: resource instances by type.

A resource with a literal `for_each` map is one instance per entry, as Terraform plans it
(developer.hashicorp.com/terraform/language/meta-arguments/for_each); a literal `count` is that
many; a `for_each` or `count` that is not a literal (unknown until apply) counts once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tfjson import instances


def _instance_count(name: str, conf: dict[str, Any]) -> int:
    count = conf.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and "for_each" not in conf:
        return count
    if "for_each" in conf and not isinstance(conf["for_each"], dict):
        return 1  # a map known only at apply
    return len(instances(name, conf))


def resource_counts(stack_file: Path) -> Counter[str]:
    """Resource instances by type in one `cdk.tf.json`."""
    doc = json.loads(stack_file.read_text())
    return Counter({
        rtype: sum(_instance_count(name, conf) for name, conf in items.items())
        for rtype, items in doc.get("resource", {}).items()
    })


def summary_table(outdir: Path) -> Table:
    stack_files = sorted((outdir / "stacks").glob("*/cdk.tf.json"))
    counts = {f.parent.name: resource_counts(f) for f in stack_files}
    table = Table(title="Synthesized stacks: resource instances by type")
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
