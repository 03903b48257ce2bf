"""Stack groups: an environment's platform stack and its client shards, read as one.

With `client_shards.count = N` (stacks/shards.py) an environment is N+1 Terraform stacks:
`<out>/stacks/<platform>/cdk.tf.json` and `<out>/stacks/<platform>-clients-<k>/cdk.tf.json`
for k in 0..N-1, each shard declaring the local `gpub_client_shard = {platform, index}`.
Whatever reads an environment's synthesized infrastructure (the local cloud, bin/submit, the
checks) reads the group: the platform's file first, then its shards' by index.

Which shards belong to a synth: the stacks that synth's `manifest.json` lists (cdktf writes it
beside `stacks/`; a shard dropped by a lower count can stay on disk, and is not listed), else,
without a manifest (stack files copied by hand), every `<platform>-clients-<k>` folder.
The names are repeated here from stacks/shards.py (this package imports nothing of ours);
tests/test_stack_groups.py holds the two to the same answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

STACK_FILE = "cdk.tf.json"
MANIFEST = "manifest.json"
SHARD_LOCAL = "gpub_client_shard"  # stacks.client_shard.SHARD_LOCAL
SHARD_INFIX = "-clients-"  # stacks.shards.SHARD_STACK_INFIX

# path -> (stat stamp, stack names): a watcher asks on every request; parse once per change.
_LISTINGS: dict[str, tuple[tuple[int, int, int] | None, list[str] | None]] = {}


def shard_index(stack: str, platform: str) -> int | None:
    """k when `stack` is `<platform>-clients-<k>`, else None."""
    head, sep, tail = stack.rpartition(SHARD_INFIX)
    return int(tail) if sep and head == platform and tail.isdigit() else None


def platform_of(stack: str) -> str:
    """The platform stack a stack name belongs to (itself when it is not a shard)."""
    head, sep, tail = stack.rpartition(SHARD_INFIX)
    return head if sep and tail.isdigit() and head else stack


def shard_of_document(doc: Mapping[str, Any]) -> tuple[str, int] | None:
    """(platform stack, index) a document declares in its `gpub_client_shard` local."""
    local = (doc.get("locals") or {}).get(SHARD_LOCAL) if isinstance(doc, Mapping) else None
    if not isinstance(local, Mapping):
        return None
    platform, index = local.get("platform"), local.get("index")
    if isinstance(platform, str) and isinstance(index, int) and not isinstance(index, bool):
        return platform, index
    return None


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _manifest_stacks(manifest: Path) -> list[str] | None:
    """The stack names a synth's manifest lists; None without a readable manifest."""
    key, stamp = str(manifest), _stamp(manifest)
    hit = _LISTINGS.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    names: list[str] | None = None
    if stamp is not None:
        try:
            stacks = json.loads(manifest.read_text(encoding="utf-8")).get("stacks")
            names = [str(n) for n in stacks] if isinstance(stacks, dict) else None
        except (OSError, ValueError, AttributeError):
            names = None
    _LISTINGS[key] = (stamp, names)
    return names


def synthesized_stacks(stacks_dir: Path) -> list[str]:
    """The names of the stacks a synth wrote under `stacks_dir` (`<out>/stacks`), sorted: its
    manifest's when there is one, else every folder holding a `cdk.tf.json`."""
    names = _manifest_stacks(Path(stacks_dir).parent / MANIFEST)
    if names is None:
        try:
            names = [p.name for p in Path(stacks_dir).iterdir() if p.is_dir()]
        except OSError:
            names = []
    return sorted(n for n in names if (Path(stacks_dir) / n / STACK_FILE).is_file())


def stack_group(stacks_dir: Path, platform_stack: str) -> list[Path]:
    """The platform's `cdk.tf.json`, then its shards' (by index) that exist, under
    `stacks_dir` (`<out>/stacks`). A platform file that is missing is still first: the caller
    says it is missing."""
    stacks_dir = Path(stacks_dir)
    shards = sorted((k, name) for name in synthesized_stacks(stacks_dir)
                    if (k := shard_index(name, platform_stack)) is not None)
    return [stacks_dir / platform_stack / STACK_FILE,
            *(stacks_dir / name / STACK_FILE for _, name in shards)]


def group_of(stack_file: Path) -> list[Path]:
    """The group a stack file leads: itself and, for a platform stack in the synth layout
    (`<out>/stacks/<name>/cdk.tf.json`), its shards. A shard or a loose file: itself."""
    stack_file = Path(stack_file)
    if stack_file.name != STACK_FILE:
        return [stack_file]
    return [stack_file, *stack_group(stack_file.parent.parent, stack_file.parent.name)[1:]]


def expand_groups(files: Iterable[Path]) -> list[Path]:
    """Every given stack file followed by its shards, each file once, order kept."""
    out: list[Path] = []
    for given in files:
        for path in group_of(Path(given)):
            if path not in out:
                out.append(path)
    return out


def group_heads(files: Sequence[Path]) -> list[Path]:
    """The given files without the shards of another given file: what names a set of groups
    (`[platform, its shard 0]` and `[platform]` name the same group)."""
    files = [Path(f) for f in files]
    heads = {(f.parent.parent, f.parent.name) for f in files if f.name == STACK_FILE}
    out: list[Path] = []
    for f in files:
        under = (f.parent.parent, platform_of(f.parent.name))
        if f.name == STACK_FILE and under[1] != f.parent.name and under in heads:
            continue
        if f not in out:
            out.append(f)
    return out


def watched_paths(files: Iterable[Path]) -> list[Path]:
    """What to stat to notice a change of the groups led by `files`: every file of them and
    each synth's manifest (a new shard appears in it)."""
    paths = expand_groups(files)
    manifests = {Path(f).parent.parent.parent / MANIFEST for f in files
                 if Path(f).name == STACK_FILE}
    return paths + sorted(manifests)


def split_groups(named: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Stack name -> the names of its group (platform first, then its shards by index), over
    the given documents: a shard joins the platform its `gpub_client_shard` local (or its
    name) says, when that platform is among them; a shard without it is a group of its own."""
    shards: dict[str, list[tuple[int, str]]] = {}
    for name, doc in named.items():
        declared = shard_of_document(doc)
        platform, index = declared if declared else (platform_of(name), shard_index(
            name, platform_of(name)))
        if index is not None and platform != name and platform in named:
            shards.setdefault(platform, []).append((index, name))
    joined = {n for members in shards.values() for _, n in members}
    out: dict[str, list[str]] = {}
    for name in named:
        if name in joined:
            continue
        group = [name, *(n for _, n in sorted(shards.get(name, [])))]
        for member in group:
            out[member] = group
    return out
