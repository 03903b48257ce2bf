"""The registry of CKV_GPUB Terraform rules: `policies/terraform_rules.yaml`, one line per rule.

Each rule is declared once there (id, severity, title, what it checks, why, source page); its
check is a `GpubCheck` in policies/checks/ with the same id (which takes its title and
severity from here), its fixtures sit at a path derived from the id, and docs/policies.md's
tables are written from the registry:

    .venv/bin/python -m policies.terraform_rules --write-docs

tests/test_policies_rules.py fails when a check has no entry, an entry has no check, a rule
lacks a fixture, or the docs' tables differ from the registry.
"""

from __future__ import annotations

import argparse
import re
import sys
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REGISTRY = Path(__file__).with_name("terraform_rules.yaml")
REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "policies" / "terraform"
DOCS = REPO / "docs" / "policies.md"
ID_RE = re.compile(r"^CKV_GPUB_(?:(?:LIM|DEP|SET|COST)_)?[1-9][0-9]*$")
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
# docs/policies.md: the generated tables sit between these markers, one pair per group.
GROUPS = {"terraform": "CKV_GPUB_", "limits": "CKV_GPUB_LIM_", "deploy": "CKV_GPUB_DEP_",
          "settings": "CKV_GPUB_SET_", "costs": "CKV_GPUB_COST_"}
BEGIN, END = "<!-- rules:{group}:begin (generated from policies/terraform_rules.yaml) -->", \
    "<!-- rules:{group}:end -->"


class TerraformRule(BaseModel):
    """One CKV_GPUB rule as declared in the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_RE.pattern)
    severity: Severity
    title: str = Field(min_length=1)
    checks: str = Field(min_length=1)
    why: str = Field(min_length=1)
    source: str = Field(min_length=1)
    scale: str = ""  # limit rules: the figure at 1,000 clients x 5 jobs (bench/RESULTS.md)

    @property
    def group(self) -> str:
        prefixed = [g for g, prefix in GROUPS.items() if g != "terraform"
                    and self.id.startswith(prefix)]
        return prefixed[0] if prefixed else "terraform"

    def fixture(self, kind: Literal["pass", "fail"]) -> Path:
        """tests/fixtures/policies/terraform/<id lower>_<kind>.tf.json: a passing fixture has
        resources the rule passes, a failing one `bad_*` resources it fails."""
        return FIXTURES / f"{self.id.lower()}_{kind}.tf.json"

    @property
    def anchor(self) -> str:
        """The rule's anchor in docs/policies.md (checkov's guideline link)."""
        return self.id.lower().replace("_", "-")


class RegistryError(ValueError):
    """The registry file is not what it should be: names the rule and the field."""


def _sort_key(rule_id: str) -> tuple[str, int]:
    group, number = rule_id.rsplit("_", 1)
    return ("" if group == "CKV_GPUB" else group), int(number)


def load(path: Path = REGISTRY) -> dict[str, TerraformRule]:
    """Every rule of the registry file, by id, in id order."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise RegistryError(f"{path}: expected one `CKV_GPUB_<n>: {{...}}` mapping per line")
    rules: dict[str, TerraformRule] = {}
    for rule_id, fields in raw.items():
        try:
            rules[str(rule_id)] = TerraformRule(id=str(rule_id), **(fields or {}))
        except (TypeError, ValidationError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in first.get("loc", ())) or "fields"
            raise RegistryError(f"{path}: {rule_id}.{where}: {first['msg']}") from None
    return {k: rules[k] for k in sorted(rules, key=_sort_key)}


@cache
def rules() -> dict[str, TerraformRule]:
    """The registry (read once)."""
    return load()


def missing_fixtures(registry: dict[str, TerraformRule] | None = None) -> list[str]:
    """`<id> <kind>` for every fixture a declared rule lacks."""
    kinds: tuple[Literal["pass", "fail"], ...] = ("pass", "fail")
    return [f"{r.id} {kind}" for r in (registry or rules()).values()
            for kind in kinds if not r.fixture(kind).is_file()]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(group: str, registry: dict[str, TerraformRule] | None = None) -> str:
    """The docs table of one group of rules."""
    chosen = [r for r in (registry or rules()).values() if r.group == group]
    limits = group == "limits"
    head = ["id", "severity", "what", "why", "source"] + (["at 1,000 clients x 5 jobs"]
                                                          if limits else [])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in chosen:
        cells = [f'<a id="{r.anchor}"></a>{r.id}', r.severity, r.checks, r.why, r.source]
        if limits:
            cells.append(r.scale or "-")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def render_docs(text: str, registry: dict[str, TerraformRule] | None = None) -> str:
    """`text` (docs/policies.md) with each group's table replaced by the registry's."""
    for group in GROUPS:
        begin, end = BEGIN.format(group=group), END.format(group=group)
        pattern = re.compile(re.escape(begin) + r"\n.*?\n" + re.escape(end), re.S)
        match = pattern.search(text)
        if match is None:
            raise RegistryError(f"{DOCS.name}: no `{begin}` ... `{end}` block")
        block = f"{begin}\n{markdown_table(group, registry)}\n{end}"
        text = text[:match.start()] + block + text[match.end():]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.terraform_rules",
                                     description="Print or write docs/policies.md's rule tables.")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS}")
    args = parser.parse_args(argv)
    try:
        if args.write_docs:
            DOCS.write_text(render_docs(DOCS.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            print("\n\n".join(markdown_table(g) for g in GROUPS))
    except RegistryError as exc:
        print(f"terraform_rules: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
