"""The input manifest: one JSON line per input object, in planning order (docs/contracts.md).

The format belongs to the one planner, `gpub_runner.plan` (a job that plans itself writes its
shards with the same `encode`); this module adds what only bin/submit needs (the hash).
"""

from __future__ import annotations

import hashlib

from gpub_runner.contract import MANIFEST_NAME
from gpub_runner.plan import ObjectInfo, decode, encode

__all__ = ["MANIFEST_NAME", "ObjectInfo", "decode", "encode", "manifest_hash"]


def manifest_hash(data: bytes) -> str:
    """sha256 of the manifest bytes, cut to 32 hex chars so it fits a label value."""
    return hashlib.sha256(data).hexdigest()[:32]
