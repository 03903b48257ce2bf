"""A new job is one file: the registry collects every `SPEC` of jobs/declared/ itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.registry import ALL_JOBS, discover

ROOT = Path(__file__).resolve().parents[1]
JOB = '''from jobs.spec import JobSpec

SPEC = JobSpec(name="{name}", image="images/{name}:1", machine_type="e2-standard-2")
'''


def test_every_declared_file_is_a_job() -> None:
    files = sorted(p.stem for p in (ROOT / "jobs" / "declared").glob("[!_]*.py"))
    assert sorted(ALL_JOBS) == files  # each file declares the job of its own name


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
             files: dict[str, str]) -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for stem, text in files.items():
        (pkg / f"{stem}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_new_file_is_a_new_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _package(tmp_path, monkeypatch, "declared_new", {
        "spellcheck": JOB.format(name="spellcheck"), "_helpers": "X = 1\n",
        "audio": JOB.format(name="audio"),
    })
    jobs = discover(pkg)
    assert list(jobs) == ["audio", "spellcheck"]
    assert jobs["spellcheck"].image == "images/spellcheck:1"


def test_a_module_without_spec_is_an_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _package(tmp_path, monkeypatch, "declared_bad", {"typo": "SPECS = []\n"})
    with pytest.raises(TypeError, match=r"declared_bad\.typo: .*SPEC = JobSpec"):
        discover(pkg)


def test_a_name_declared_twice_is_an_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _package(tmp_path, monkeypatch, "declared_twice", {
        "a": JOB.format(name="same"), "b": JOB.format(name="same")})
    with pytest.raises(ValueError, match=r"'same' is already declared in declared_twice\.a"):
        discover(pkg)
