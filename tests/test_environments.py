"""environments.yaml: the one declared source of environments and clients, with an explicit
kind; bad input is one line naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.registry import ALL_JOBS
from stacks.environments import (
    DEFAULT_FILE,
    ENV_VAR,
    EnvironmentsError,
    environment,
    environments_file,
    load_environments,
    parse_environments,
)

MINIMAL = """\
{name}:
  kind: {kind}
  project_id: example-ml-x
  region: europe-west4
  state_bucket: b
  state_prefix: p
  quota_contact_email: a@example.com
  jobs: [embed]
"""


def _parse(text: str) -> list:
    return parse_environments(text, Path("environments.yaml"))


def test_the_example_file_declares_dev_and_prod_with_their_kinds() -> None:
    envs = load_environments()
    assert [(e.name, e.kind) for e in envs] == [("dev", "dev"), ("prod", "prod")]
    dev = envs[0]
    assert [c.name for c in dev.clients] == ["acme", "globex"]
    assert [j.name for j in dev.jobs] == list(ALL_JOBS)  # `jobs: all`
    assert environment("prod").cmek is True


def test_the_file_is_the_repository_default_unless_the_variable_names_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert environments_file() == DEFAULT_FILE
    other = tmp_path / "envs.yaml"
    other.write_text(MINIMAL.format(name="stage", kind="prod"))
    monkeypatch.setenv(ENV_VAR, str(other))
    assert [e.name for e in load_environments()] == ["stage"]


def test_the_kind_is_stated_not_read_from_the_name() -> None:
    # A prod environment named "devbox" runs GPU jobs on standard VMs; a dev one named "lab"
    # on Spot (the model's rule: spot for GPU jobs in dev).
    [devbox] = _parse(MINIMAL.format(name="devbox", kind="prod"))
    [lab] = _parse(MINIMAL.format(name="lab", kind="dev"))
    embed = ALL_JOBS["embed"]
    assert embed.provisioning is None and embed.is_gpu
    assert embed.provisioning_for(devbox.kind) == "standard"
    assert embed.provisioning_for(lab.kind) == "spot"
    assert devbox.render_context("embed").env_kind == "prod"
    assert devbox.gpu_demand() == {("europe-west4", "L4", False): 4}
    assert lab.gpu_demand() == {("europe-west4", "L4", True): 4}


@pytest.mark.parametrize(("text", "needle"), [
    (MINIMAL.format(name="dev", kind="dev").replace("  kind: dev\n", ""), "dev: kind"),
    (MINIMAL.format(name="dev", kind="staging"), "dev: kind"),
    (MINIMAL.format(name="dev", kind="dev").replace("[embed]", "[embed, nope]"),
     "dev.jobs: unknown job(s) nope"),
    (MINIMAL.format(name="dev", kind="dev").replace("[embed]", "7"),
     "dev.jobs: expected `all` or a list of job names"),
    (MINIMAL.format(name="dev", kind="dev") + "  colour: blue\n", "dev: colour"),
    (MINIMAL.format(name="dev", kind="dev") + "  name: dev\n", "dev.name: the key is the name"),
    ("dev: [1, 2]\n", "dev: expected a mapping of settings"),
    ("- dev\n", "expected one mapping per environment"),
    ("dev: {kind: dev\n", "not YAML"),
])
def test_bad_input_is_one_line_naming_the_field(text: str, needle: str) -> None:
    with pytest.raises(EnvironmentsError) as err:
        _parse(text)
    message = str(err.value)
    assert message.startswith("environments.yaml: ") and needle in message, message
    assert "\n" not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentsError, match="cannot read the environments file"):
        load_environments(tmp_path / "absent.yaml")
    with pytest.raises(EnvironmentsError, match="no environment 'qa' \\(declared: dev, prod\\)"):
        environment("qa")


def test_synth_refuses_a_bad_file_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import main

    bad = tmp_path / "environments.yaml"
    bad.write_text(MINIMAL.format(name="dev", kind="staging"))
    monkeypatch.setenv(ENV_VAR, str(bad))
    assert main.main() == 2
    err = capsys.readouterr().err
    assert err.startswith(f"synth: {bad}: dev: kind") and err.count("\n") == 1, err


@pytest.mark.parametrize("command", [
    ["-m", "policies.check_cli", "--no-synth", "--out", "cdktf.out.absent"],
    ["-m", "submit", "where", "--client", "acme", "--job", "uppercase", "--env", "dev"],
])
def test_bin_check_and_bin_submit_refuse_a_bad_file_with_exit_2(
        tmp_path: Path, command: list[str]) -> None:
    """Both read the same file as synth; a bad one is exit 2 and one line naming the field
    (bin/check prints for people on stdout, bin/submit its errors on stderr)."""
    import os
    import subprocess
    import sys

    bad = tmp_path / "environments.yaml"
    bad.write_text(MINIMAL.format(name="dev", kind="staging"))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, *command], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, ENV_VAR: str(bad)}, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "dev: kind" in lines[0] and "Traceback" not in proc.stderr, lines
