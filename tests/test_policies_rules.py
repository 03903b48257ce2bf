"""The CKV_GPUB rule registry (policies/terraform_rules.yaml): every check declared once, with
both fixtures, and docs/policies.md's tables written from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from policies import checkbase
from policies.terraform_rules import (
    DOCS,
    FIXTURES,
    RegistryError,
    TerraformRule,
    load,
    missing_fixtures,
    render_docs,
    rules,
)

CHECKS = Path(checkbase.__file__).with_name("checks")


@pytest.fixture(scope="module")
def loaded() -> dict[str, checkbase.GpubCheck]:
    """Every check of policies/checks, loaded the way checkov loads them (each file executed as
    a module of its own; checkov's registry keeps one check per id)."""
    for path in sorted(CHECKS.glob("gpub_*.py")):
        spec = importlib.util.spec_from_file_location(f"registry_test_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return dict(checkbase.LOADED)


def test_every_check_is_declared_and_every_declared_rule_has_a_check(
        loaded: dict[str, checkbase.GpubCheck]) -> None:
    assert sorted(set(loaded) - set(rules())) == [], "checks missing from terraform_rules.yaml"
    assert sorted(set(rules()) - set(loaded)) == [], "declared rules without a check"


def test_a_check_takes_its_title_and_severity_from_the_registry(
        loaded: dict[str, checkbase.GpubCheck]) -> None:
    for rule_id, rule in rules().items():
        check = loaded[rule_id]
        assert check.name == rule.title, rule_id
        assert check.severity is not None and check.severity.name == rule.severity, rule_id
        assert check.guideline == f"docs/policies.md#{rule.anchor}"


@pytest.mark.parametrize("rule_id", list(rules()))
def test_every_rule_has_both_fixtures(rule_id: str) -> None:
    rule = rules()[rule_id]
    assert rule.fixture("pass").is_file() and rule.fixture("fail").is_file(), rule_id


def test_a_rule_without_fixtures_is_reported() -> None:
    new = TerraformRule(id="CKV_GPUB_999", severity="LOW", title="t", checks="c", why="w",
                        source="s")
    assert missing_fixtures({**rules(), new.id: new}) == ["CKV_GPUB_999 pass",
                                                         "CKV_GPUB_999 fail"]
    assert missing_fixtures() == []
    assert new.fixture("pass") == FIXTURES / "ckv_gpub_999_pass.tf.json"


def test_the_docs_tables_are_the_registrys() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert render_docs(text) == text, (
        "docs/policies.md differs from policies/terraform_rules.yaml: run "
        "`.venv/bin/python -m policies.terraform_rules --write-docs`")
    for rule in rules().values():
        assert f'<a id="{rule.anchor}"></a>{rule.id} | {rule.severity} |' in text


def test_a_new_registry_line_reaches_the_docs(tmp_path: Path) -> None:
    registry = tmp_path / "rules.yaml"
    registry.write_text('CKV_GPUB_LIM_99: {severity: LOW, title: "T", checks: "at most 1 | 2", '
                        'why: "w", source: "cloud.google.com/x", scale: "3"}\n')
    text = render_docs(DOCS.read_text(encoding="utf-8"), load(registry))
    assert '| <a id="ckv-gpub-lim-99"></a>CKV_GPUB_LIM_99 | LOW | at most 1 \\| 2 | w |' in text
    assert "CKV_GPUB_1 " not in text  # the tables are the given registry's, nothing else


@pytest.mark.parametrize(("line", "needle"), [
    ('CKV_GPUB_7: {severity: URGENT, title: "t", checks: "c", why: "w", source: "s"}',
     "CKV_GPUB_7.severity"),
    ('CKV_GPUB_7: {severity: LOW, title: "t", checks: "c", why: "w"}', "CKV_GPUB_7.source"),
    ('GPUB_7: {severity: LOW, title: "t", checks: "c", why: "w", source: "s"}', "GPUB_7.id"),
    ('CKV_GPUB_7: {severity: LOW, title: "t", checks: "c", why: "w", source: "s", x: 1}',
     "CKV_GPUB_7.x"),
])
def test_a_bad_registry_line_names_the_rule_and_the_field(tmp_path: Path, line: str,
                                                          needle: str) -> None:
    registry = tmp_path / "rules.yaml"
    registry.write_text(line + "\n")
    with pytest.raises(RegistryError, match=needle.replace(".", r"\.")):
        load(registry)
