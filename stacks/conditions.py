"""IAM condition expressions (CEL) for prefix-scoped object access.

Bucket names are literal (not references) so an expression can be read in review and evaluated
in tests with a real CEL implementation.
"""

from __future__ import annotations

import json


def object_resource(bucket: str, prefix: str) -> str:
    return f"projects/_/buckets/{bucket}/objects/{prefix}"


def _quote(text: str) -> str:
    # JSON string quoting is valid CEL string quoting for the characters names may hold.
    return json.dumps(text)


def objects_under(bucket: str, *prefixes: str) -> str:
    """True for objects whose name starts with one of the prefixes."""
    if not prefixes:
        raise ValueError("objects_under needs at least one prefix")
    terms = [f"resource.name.startsWith({_quote(object_resource(bucket, p))})" for p in prefixes]
    return " || ".join(terms)


def list_under(bucket: str, prefix: str) -> str:
    """True for list calls on the bucket restricted to the prefix (objectListPrefix).

    `storage.objects.list` is checked against the bucket, not an object, so a prefix can only
    be enforced through the request's `prefix` parameter, which GCS exposes to conditions as
    the `storage.googleapis.com/objectListPrefix` API attribute (the raw prefix, no
    `projects/_/...`). A list without a prefix, or outside `prefix`, is denied.
    """
    return (
        f'resource.type == "storage.googleapis.com/Bucket" && '
        f"resource.name == {_quote(f'projects/_/buckets/{bucket}')} && "
        f'api.getAttribute("storage.googleapis.com/objectListPrefix", "")'
        f".startsWith({_quote(prefix)})"
    )


def bucket_list(bucket: str, prefix: str = "") -> str:
    """True for list calls on the bucket; with `prefix`, only for lists inside it (see
    `list_under`). Without a prefix: any list of this bucket, and nothing else the role
    carries (object reads are checked on objects, where the condition is false)."""
    if prefix:
        return list_under(bucket, prefix)
    return (
        f'resource.type == "storage.googleapis.com/Bucket" && '
        f"resource.name == {_quote(f'projects/_/buckets/{bucket}')}"
    )
