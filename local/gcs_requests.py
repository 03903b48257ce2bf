"""Which IAM permissions a Cloud Storage JSON or XML API request needs.

Permission per method: https://cloud.google.com/storage/docs/json_api/v1 (each method's
"Authorization scopes"/IAM permission) and
https://cloud.google.com/storage/docs/access-control/iam-json (JSON API) /
https://cloud.google.com/storage/docs/access-control/iam-xml (XML API).
Replacing an existing object also needs `storage.objects.delete`
(https://cloud.google.com/storage/docs/access-control/iam-permissions, storage.objects.create:
"to overwrite an existing object, storage.objects.delete is also required"); a create with
`ifGenerationMatch=0` can never replace, so it needs create only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class Need:
    """One permission on one bucket (object None: on the bucket itself)."""

    permission: str
    bucket: str
    object: str | None = None
    list_prefix: str | None = None
    # create without a no-overwrite precondition: delete is needed too if the object exists
    overwrite_check: bool = False
    project: str | None = None  # project-level checks (bucket list/create): bucket is ""


@dataclass(frozen=True)
class Unmapped:
    """A request the layer does not know how to authorize: denied (fail closed)."""

    reason: str


Classified = list[Need] | Unmapped
PROJECT_BUCKET = ""  # project-level checks (bucket list/create) carry no bucket


def _upload_name(query: Mapping[str, str], body: bytes, content_type: str) -> str | None:
    """The object name of an upload: `name=` or the JSON metadata (first multipart part)."""
    if query.get("name"):
        return query["name"]
    text = body
    if "multipart/" in content_type and "boundary=" in content_type:
        boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
        parts = body.split(b"--" + boundary)
        text = parts[1].split(b"\r\n\r\n", 1)[-1] if len(parts) > 1 else b""
    try:
        meta = json.loads(text.strip() or b"{}")
    except ValueError:
        return None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _create(bucket: str, name: str, query: Mapping[str, str], no_overwrite: bool) -> list[Need]:
    return [Need("storage.objects.create", bucket, name, overwrite_check=not no_overwrite)]


def classify(
    method: str, path: str, query: Mapping[str, str], body: bytes = b"", content_type: str = ""
) -> Classified:
    """The permissions `method path?query` needs. `path` is the raw (still %-encoded) path."""
    method = method.upper()
    parts = path.split("/")[1:]  # "" first element dropped; object names keep their %2F
    seg = [unquote(p) for p in parts]
    if seg[:2] == ["storage", "v1"]:
        return _json_api(method, seg[2:], query)
    if seg[:3] == ["upload", "storage", "v1"]:
        rest = seg[3:]
        if len(rest) == 3 and rest[0] == "b" and rest[2] == "o":
            if query.get("upload_id"):
                return []  # later chunks of a session authorized when it was opened
            name = _upload_name(query, body, content_type)
            if not name:
                return Unmapped("upload without an object name")
            return _create(rest[1], name, query, query.get("ifGenerationMatch") == "0")
        return Unmapped(f"unknown upload path {path}")
    if seg[:3] == ["download", "storage", "v1"]:
        rest = seg[3:]
        if len(rest) >= 4 and rest[0] == "b" and rest[2] == "o":
            return [Need("storage.objects.get", rest[1], "/".join(rest[3:]))]
        return Unmapped(f"unknown download path {path}")
    if seg and seg[0] in {"batch", "_internal"}:
        return Unmapped(f"{seg[0]} requests are not supported by the local IAM layer")
    return _xml_api(method, seg, query)


def _json_api(method: str, seg: list[str], query: Mapping[str, str]) -> Classified:
    if seg == ["b"]:
        perm = {"GET": "storage.buckets.list", "POST": "storage.buckets.create"}.get(method)
        if perm is None:
            return Unmapped(f"{method} on buckets")
        return [Need(perm, PROJECT_BUCKET, project=query.get("project", ""))]
    if len(seg) < 2 or seg[0] != "b":
        return Unmapped("/".join(seg))
    bucket, rest = seg[1], seg[2:]
    if not rest:
        perm = {
            "GET": "storage.buckets.get", "PATCH": "storage.buckets.update",
            "PUT": "storage.buckets.update", "DELETE": "storage.buckets.delete",
        }.get(method)  # fmt: skip
        return [Need(perm, bucket)] if perm else Unmapped(f"{method} on a bucket")
    if rest == ["iam"]:
        perm = "storage.buckets.getIamPolicy" if method == "GET" else "storage.buckets.setIamPolicy"
        return [Need(perm, bucket)]
    if rest == ["iam", "testPermissions"]:
        return []  # answers for the caller's own permissions; needs none
    if rest == ["o"]:
        if method == "GET":
            return [Need("storage.objects.list", bucket, None, query.get("prefix", ""))]
        return Unmapped(f"{method} on an object collection")
    if rest[0] != "o" or len(rest) < 2:
        return Unmapped("/".join(seg))
    # Object names were %-encoded as one segment; a raw "/" may also appear in XML-ish paths.
    tail = rest[1:]
    for verb in ("rewriteTo", "copyTo"):
        if verb in tail:
            i = tail.index(verb)
            src, dst = "/".join(tail[:i]), tail[i + 1:]
            if len(dst) >= 4 and dst[0] == "b" and dst[2] == "o":
                no_over = query.get("ifGenerationMatch") == "0"
                return [Need("storage.objects.get", bucket, src),
                        *_create(dst[1], "/".join(dst[3:]), query, no_over)]
            return Unmapped(f"{verb} without a destination")
    if tail[-1] == "compose" and len(tail) > 1:
        return _create(bucket, "/".join(tail[:-1]), query, query.get("ifGenerationMatch") == "0")
    name = "/".join(tail)
    perm = {
        "GET": "storage.objects.get", "HEAD": "storage.objects.get",
        "PATCH": "storage.objects.update", "PUT": "storage.objects.update",
        "DELETE": "storage.objects.delete",
    }.get(method)  # fmt: skip
    return [Need(perm, bucket, name)] if perm else Unmapped(f"{method} on an object")


def _xml_api(method: str, seg: list[str], query: Mapping[str, str]) -> Classified:
    seg = [s for s in seg if s != ""] if len(seg) == 1 else seg
    if not seg or not seg[0]:
        return [Need("storage.buckets.list", PROJECT_BUCKET)] if method == "GET" else Unmapped(
            f"XML {method} /"
        )
    bucket, name = seg[0], "/".join(seg[1:])
    if not name:
        if method == "GET":
            return [Need("storage.objects.list", bucket, None, query.get("prefix", ""))]
        perm = {"PUT": "storage.buckets.create", "DELETE": "storage.buckets.delete"}.get(method)
        return [Need(perm, bucket)] if perm else Unmapped(f"XML {method} on a bucket")
    if method in {"GET", "HEAD"}:
        return [Need("storage.objects.get", bucket, name)]
    if method == "PUT":
        return _create(bucket, name, query, query.get("x-goog-if-generation-match") == "0")
    if method == "DELETE":
        return [Need("storage.objects.delete", bucket, name)]
    return Unmapped(f"XML {method} on an object")
