"""Live topology: the local cloud follows the synthesized stack while it runs.

A `StackWatch` is given stack files and watches their groups (`tfjson.expand_groups`: a
platform stack and its client shards, as the synth's manifest lists them). It remembers each
file's identity (inode, size, mtime in ns) and hands back the parsed documents when any of
them changed, or a shard came or went, at the moment a consumer asks: the Pub/Sub
server asks on every RPC (a gRPC interceptor), the local Eventarc before every delivery round,
so the first request after a new synth sees the new topics, subscriptions, triggers and
workflows. Nothing sleeps or polls on a timer. A file that is missing or does not parse (a synth
writing it) leaves the last good topology in place; the next request tries again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfjson import expand_groups

log = logging.getLogger("local.topology")

Stamp = tuple[tuple[int, int, int] | None, ...]


def stamp_of(files: Sequence[Path]) -> Stamp:
    out: list[tuple[int, int, int] | None] = []
    for p in files:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def fingerprint(files: Sequence[Path]) -> list[list[int] | None]:
    """A JSON-friendly stamp (servers.json records what each server was started with)."""
    return [list(s) if s else None for s in stamp_of(files)]


class StackWatch:
    def __init__(self, files: Sequence[Path]) -> None:
        self.files = [Path(p) for p in files]  # the groups' heads, as given
        self._stamp: tuple[tuple[Path, ...], Stamp] | None = None
        self._lock = threading.Lock()
        self.reloads = 0  # how many times changed documents were handed out

    def changed(self) -> list[dict[str, Any]] | None:
        """The documents when they changed since the last call that returned them, else None.
        The first call returns them (when readable)."""
        with self._lock:
            files = expand_groups(self.files)
            stamp = (tuple(files), stamp_of(files))
            if stamp == self._stamp or any(s is None for s in stamp[1]):
                return None
            try:
                docs = [json.loads(p.read_text(encoding="utf-8")) for p in files]
            except (OSError, ValueError) as exc:
                log.warning("stack not readable yet, keeping the last topology: %s", exc)
                return None
            if stamp_of(files) != stamp[1]:  # rewritten while we read: next call
                return None
            self._stamp = stamp
            self.reloads += 1
            return [d for d in docs if isinstance(d, dict)]
