"""Run this repository's container images as local processes (see docs/contracts.md, "Local
images"): `images/<name>/local.json` gives the entrypoint, env and PYTHONPATH."""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

# ".../<name>:<tag>" or ".../<name>@sha256:<hex>"; the name is the last path segment.
_IMAGE_RE = re.compile(
    r"(?:^|/)(?P<name>[a-z0-9][a-z0-9._-]*)(?::[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class LocalImage:
    name: str
    entrypoint: list[str]
    env: dict[str, str] = field(default_factory=dict)
    pythonpath: list[Path] = field(default_factory=list)


def image_name(image_uri: str) -> str | None:
    """`europe-west4-docker.pkg.dev/p/batch-images/uppercase:abc` -> "uppercase"."""
    m = _IMAGE_RE.search(image_uri.strip())
    return m.group("name") if m else None


def find_local_image(image_uri: str, repo_root: Path) -> LocalImage | None:
    """The image's local.json recipe, or None when the image is not one of ours."""
    name = image_name(image_uri)
    if name is None:
        return None
    path = repo_root / "images" / name / "local.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    entry = data.get("entrypoint")
    if not isinstance(entry, list) or not entry or not all(isinstance(x, str) for x in entry):
        raise ValueError(f"{path}: 'entrypoint' must be a non-empty list of strings")
    env = data.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{path}: 'env' must map names to strings")
    pp = data.get("pythonpath", [])
    if not isinstance(pp, list) or not all(isinstance(x, str) for x in pp):
        raise ValueError(f"{path}: 'pythonpath' must be a list of paths")
    return LocalImage(
        name=name,
        entrypoint=list(entry),
        env=dict(env),
        pythonpath=[(repo_root / p).resolve() for p in pp],
    )


def local_command(image: LocalImage, entrypoint: str, commands: list[str]) -> list[str]:
    """argv as Docker would build it: the runnable's `entrypoint` (if set) replaces the
    image's, `commands` are the arguments; `python` means this venv's interpreter."""
    argv = shlex.split(entrypoint) if entrypoint else list(image.entrypoint)
    argv += commands
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv
