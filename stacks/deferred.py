"""Values written into the synthesized JSON after the CDK synthesizes (no jsii round trip).

Client tables (`for_each` maps with one entry per client) and the job workflows' sources (which
list the job's clients) are plain Python data. Handing them to the CDK costs a jsii round trip
per map entry (some 60,000 at 1,000 clients x 5 jobs); instead the resource carries a token
string and `resolve_file` puts the value in its place in `cdk.tf.json`. The file keeps literal
maps, so Terraform, checkov, the policy checks and the local IAM enforcement read it as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

_PRODUCERS: dict[str, Callable[[], Any]] = {}
_NEXT = count()
TOKEN_PREFIX = "__gpub_deferred_"


def deferred(produce: Callable[[], Any]) -> str:
    """A token to put where the value goes; `produce()` runs when the file is resolved."""
    token = f"{TOKEN_PREFIX}{next(_NEXT)}__"
    _PRODUCERS[token] = produce
    return token


def deferred_map(entries: dict[str, Any]) -> str:
    """A token for `entries` as it is at resolve time (entries added later are included)."""
    return deferred(lambda: dict(entries))


def _resolve(node: Any) -> Any:
    if isinstance(node, str):
        if node.startswith(TOKEN_PREFIX) and node in _PRODUCERS:
            return _PRODUCERS[node]()
        return node
    if isinstance(node, list):
        return [_resolve(item) for item in node]
    if isinstance(node, dict):
        return {k: _resolve(v) for k, v in node.items()}
    return node


def resolve_file(path: Path) -> None:
    """Replace every token in a synthesized stack file by its value."""
    text = path.read_text(encoding="utf-8")
    if TOKEN_PREFIX not in text:
        return
    doc = _resolve(json.loads(text))
    leftover = TOKEN_PREFIX in json.dumps(doc)
    if leftover:
        raise ValueError(f"{path}: a deferred value of another process cannot be resolved")
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
