"""The input manifest: one JSON line per input object, in planning order (docs/contracts.md).

Encoding is a hot path (a million objects): lines are built with one `json.dumps` per name
(names may need escaping) and plain formatting for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import NamedTuple

MANIFEST_NAME = "_manifest.jsonl"


class ObjectInfo(NamedTuple):
    """An input object; `name` is relative to the input prefix."""

    name: str
    size: int
    generation: str


def encode(objects: Iterable[ObjectInfo]) -> bytes:
    dumps = json.dumps
    lines = [
        f'{{"name": {dumps(o.name)}, "size": {int(o.size)}, "generation": "{o.generation}"}}\n'
        for o in objects
    ]
    return "".join(lines).encode("utf-8")


def decode(data: bytes) -> list[ObjectInfo]:
    out: list[ObjectInfo] = []
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out.append(ObjectInfo(rec["name"], int(rec["size"]), str(rec["generation"])))
    return out


def manifest_hash(data: bytes) -> str:
    """sha256 of the manifest bytes, cut to 32 hex chars so it fits a label value."""
    return hashlib.sha256(data).hexdigest()[:32]
