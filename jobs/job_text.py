"""Read the text of a Batch job file: JSON, or YAML as `gcloud batch jobs submit --config` reads
it (https://cloud.google.com/sdk/gcloud/reference/batch/jobs/submit: "a sample JSON
configuration file (config.json)" or "a sample YAML configuration file (config.yaml)"). JSON with
trailing commas is valid YAML flow syntax, so it loads too.

Errors give line and column; duplicate keys and absurd nesting are refused before any
recursion can blow up.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from jobs.batch_proto import MAX_DEPTH
from jobs.errors import JobSpecError

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', re.DOTALL)


def load_job_text(text: str) -> dict[str, Any]:
    """The job object in `text` (JSON or YAML), or a JobSpecError naming line and column."""
    if not text.strip():
        raise JobSpecError("the file is empty; a Batch job is a JSON or YAML object", "json")
    nesting = _bracket_depth(text)
    if nesting > MAX_DEPTH:
        raise JobSpecError(
            f"nested {nesting} levels deep; a Batch job nests at most a few levels "
            f"(limit {MAX_DEPTH})",
            "json",
        )
    try:
        raw: Any = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raw = _load_yaml(text, exc)
    except RecursionError:  # pragma: no cover - the bracket scan stops this first
        raise JobSpecError(f"nested deeper than {MAX_DEPTH} levels", "json") from None
    if not isinstance(raw, dict):
        raise JobSpecError(f"a Batch job is a JSON object; got {_kind(raw)}", "json")
    return raw


def _load_yaml(text: str, json_error: json.JSONDecodeError) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except JobSpecError:
        raise
    except yaml.MarkedYAMLError as exc:
        if text.lstrip().startswith(("{", "[")) or not text.strip():
            # It was meant as JSON: the JSON parser's position is the useful one.
            raise JobSpecError(
                f"malformed JSON at line {json_error.lineno}, column {json_error.colno}: "
                f"{json_error.msg}",
                "json",
            ) from None
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise JobSpecError(f"malformed YAML{where}: {exc.problem or exc}", "yaml") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise JobSpecError(f"malformed YAML: {type(exc).__name__}", "yaml") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise JobSpecError(f"duplicate key {key!r}", "json")
        seen[key] = value
    return seen


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            mark = key_node.start_mark
            raise JobSpecError(
                f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}", "yaml"
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def _bracket_depth(text: str) -> int:
    """Deepest nesting of [ and { outside quoted strings (a cheap scan, no recursion)."""
    stripped = _STRING_RE.sub("", text) if len(text) < 5_000_000 else text
    deepest = level = 0
    for ch in stripped:
        if ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level = max(0, level - 1)
    return deepest


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
