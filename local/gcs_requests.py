"""Which IAM permissions a Cloud Storage JSON or XML API request needs, and the one request
the storage server is then sent.

Permission per method: https://cloud.google.com/storage/docs/json_api/v1 (each method's
"Authorization scopes"/IAM permission) and
https://cloud.google.com/storage/docs/access-control/iam-json (JSON API) /
https://cloud.google.com/storage/docs/access-control/iam-xml (XML API).
Replacing an existing object also needs `storage.objects.delete`
(https://cloud.google.com/storage/docs/access-control/iam-permissions, storage.objects.create:
"to overwrite an existing object, storage.objects.delete is also required"); a create with
`ifGenerationMatch=0` can never replace, so it needs create only. Copy and rewrite need
`storage.objects.get` on the source and create on the destination; compose needs get on every
source object (iam-json: objects.compose).

The request is parsed once (`plan`) into the bucket and object names it acts on; the layer
authorizes those names, and the storage server is sent a URL rebuilt from the same names
(each %-encoded as one path segment, in the stored layout of `local.gcs_names`), never the
client's raw path. A raw `.`/`..` path segment (also %-encoded) is refused: the JSON API
wants the object name %-encoded as ONE segment
(https://cloud.google.com/storage/docs/request-endpoints#encoding), so a dot segment can only
be path structure, which is exactly what a normalizing hop would rewrite after authorization.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlencode

from local.gcs_names import bucket_name_error, object_name_error, stored_name, stored_prefix
from local.gcs_uploads import UploadError, plan_upload


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


@dataclass(frozen=True)
class Invalid:
    """A request GCS answers 400 (a bad name, a dot segment): refused before anything runs."""

    message: str


Classified = list[Need] | Unmapped
PROJECT_BUCKET = ""  # project-level checks (bucket list/create) carry no bucket
_NAME_PARAMS = ("name",)
_PREFIX_PARAMS = ("prefix",)
_OFFSET_PARAMS = ("startOffset", "endOffset", "marker", "start-after")


@dataclass
class Plan:
    """What a request needs and what is forwarded: `path` (raw, %-encoded), `query` (pairs),
    `body` (None: unchanged). `upload_id`: a resumable session's later chunk."""

    needs: list[Need] | Unmapped | Invalid
    path: str = ""
    query: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None
    upload_id: str = ""
    content_type: str | None = None  # set when the body was rebuilt
    data_answer: bool = False  # the answer is object data (never rewritten), not metadata


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _obj(name: str) -> str:
    return _q(stored_name(name))


def _rename(query: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for k, v in query:
        if k in _NAME_PARAMS or k in _OFFSET_PARAMS:
            v = stored_name(v)
        elif k in _PREFIX_PARAMS:
            v = stored_prefix(v)
        out.append((k, v))
    return out


def _first(query: Sequence[tuple[str, str]], key: str) -> str:
    return next((v for k, v in query if k == key), "")


def _names_invalid(needs: list[Need]) -> Invalid | None:
    for need in needs:
        if need.bucket and (msg := bucket_name_error(need.bucket)):
            return Invalid(msg)
        if need.object is not None and need.permission == "storage.objects.create":
            if msg := object_name_error(need.object):
                return Invalid(msg)
        elif need.object is not None and not need.object:
            return Invalid("object name is empty; allowed: 1 to 1024 bytes of UTF-8")
    return None


def plan(method: str, path: str, query: Sequence[tuple[str, str]], body: bytes = b"",
         content_type: str = "") -> Plan:
    """Parse `method path?query` (raw, still %-encoded path) into needs and the request to
    forward."""
    method = method.upper()
    raw = path.split("/")[1:]
    seg = [unquote(p) for p in raw]
    if any(s in {".", ".."} for s in seg):
        return Plan(Invalid(f"path {path!r} has a '.' or '..' segment; object names go "
                            "%-encoded in one segment"))
    if seg[:2] == ["storage", "v1"]:
        p = _json_api(method, seg[2:], query, body)
    elif seg[:3] == ["upload", "storage", "v1"]:
        p = _upload(method, seg[3:], query, body, content_type)
    elif seg[:3] == ["download", "storage", "v1"]:
        rest = seg[3:]
        if len(rest) >= 4 and rest[0] == "b" and rest[2] == "o" and method in {"GET", "HEAD"}:
            name = "/".join(rest[3:])
            p = Plan([Need("storage.objects.get", rest[1], name)],
                     f"/download/storage/v1/b/{_q(rest[1])}/o/{_obj(name)}", list(query),
                     data_answer=True)
        else:
            p = Plan(Unmapped(f"unknown download path {path}"))
    elif seg and seg[0] in {"batch", "_internal"}:
        p = Plan(Unmapped(f"{seg[0]} requests are not supported by the local IAM layer"))
    else:
        p = _xml_api(method, seg, query)
    if isinstance(p.needs, list) and (bad := _names_invalid(p.needs)):
        p.needs = bad
    return p


def classify(method: str, path: str, query: Mapping[str, str], body: bytes = b"",
             content_type: str = "") -> Classified | Invalid:
    """The permissions `method path?query` needs (see `plan`)."""
    return plan(method, path, list(query.items()), body, content_type).needs


def _create(bucket: str, name: str, no_overwrite: bool) -> Need:
    return Need("storage.objects.create", bucket, name, overwrite_check=not no_overwrite)


def _upload(method: str, rest: list[str], query: Sequence[tuple[str, str]], body: bytes,
            content_type: str) -> Plan:
    if not (len(rest) == 3 and rest[0] == "b" and rest[2] == "o"):
        return Plan(Unmapped("unknown upload path"))
    bucket, path = rest[1], f"/upload/storage/v1/b/{_q(rest[1])}/o"
    if upload_id := _first(query, "upload_id"):
        if method != "PUT":  # a POST with upload_id would start a new, unauthorized upload
            return Plan(Unmapped(f"{method} with upload_id: session chunks are PUT"))
        return Plan([], path, list(query), upload_id=upload_id)
    if method != "POST":
        return Plan(Unmapped(f"{method} on an upload collection"))
    up = plan_upload(_first(query, "uploadType"), _first(query, "name"), body, content_type)
    if isinstance(up, UploadError):
        return Plan(Invalid(up.message) if up.invalid else Unmapped(up.message))
    no_over = _first(query, "ifGenerationMatch") == "0"
    return Plan([_create(bucket, up.name, no_over)], path, _rename(query), up.body,
                content_type=up.content_type)


def _json_api(method: str, seg: list[str], query: Sequence[tuple[str, str]],
              body: bytes) -> Plan:
    q = list(query)
    if seg == ["b"]:
        perm = {"GET": "storage.buckets.list", "POST": "storage.buckets.create"}.get(method)
        if perm is None:
            return Plan(Unmapped(f"{method} on buckets"))
        return Plan([Need(perm, PROJECT_BUCKET, project=_first(q, "project"))], "/storage/v1/b", q)
    if len(seg) < 2 or seg[0] != "b":
        return Plan(Unmapped("/".join(seg)))
    bucket, rest = seg[1], seg[2:]
    base = f"/storage/v1/b/{_q(bucket)}"
    if not rest:
        perm = {
            "GET": "storage.buckets.get", "PATCH": "storage.buckets.update",
            "PUT": "storage.buckets.update", "DELETE": "storage.buckets.delete",
        }.get(method)  # fmt: skip
        return Plan([Need(perm, bucket)], base, q) if perm else Plan(
            Unmapped(f"{method} on a bucket"))
    if rest == ["iam"]:
        perm = "storage.buckets.getIamPolicy" if method == "GET" else "storage.buckets.setIamPolicy"
        return Plan([Need(perm, bucket)], base + "/iam", q)
    if rest == ["iam", "testPermissions"]:
        return Plan([], base + "/iam/testPermissions", q)  # the caller's own permissions
    if rest == ["o"]:
        if method == "GET":
            need = Need("storage.objects.list", bucket, None, _first(q, "prefix"))
            return Plan([need], base + "/o", _rename(q))
        return Plan(Unmapped(f"{method} on an object collection"))
    if rest[0] != "o" or len(rest) < 2:
        return Plan(Unmapped("/".join(seg)))
    return _object(method, bucket, rest[1:], q, body)


def _object(method: str, bucket: str, tail: list[str], q: list[tuple[str, str]],
            body: bytes) -> Plan:
    base = f"/storage/v1/b/{_q(bucket)}/o"
    no_over = _first(q, "ifGenerationMatch") == "0"
    for verb in ("rewriteTo", "copyTo"):
        if verb in tail:
            i = tail.index(verb)
            src, dst = "/".join(tail[:i]), tail[i + 1:]
            if method != "POST" or not (len(dst) >= 4 and dst[0] == "b" and dst[2] == "o"):
                return Plan(Unmapped(f"{method} {verb} without a destination"))
            dst_name = "/".join(dst[3:])
            path = f"{base}/{_obj(src)}/{verb}/b/{_q(dst[1])}/o/{_obj(dst_name)}"
            return Plan([Need("storage.objects.get", bucket, src),
                         _create(dst[1], dst_name, no_over)], path, q)
    if tail[-1] == "compose" and len(tail) > 1:
        return _compose(method, bucket, "/".join(tail[:-1]), q, body, no_over)
    name = "/".join(tail)
    perm = {
        "GET": "storage.objects.get", "HEAD": "storage.objects.get",
        "PATCH": "storage.objects.update", "PUT": "storage.objects.update",
        "DELETE": "storage.objects.delete",
    }.get(method)  # fmt: skip
    if perm is None:
        return Plan(Unmapped(f"{method} on an object"))
    return Plan([Need(perm, bucket, name)], f"{base}/{_obj(name)}", q,
                data_answer=_first(q, "alt") == "media")


def _compose(method: str, bucket: str, dest: str, q: list[tuple[str, str]], body: bytes,
             no_over: bool) -> Plan:
    try:
        doc = json.loads(body or b"{}")
        sources = [str(s["name"]) for s in doc.get("sourceObjects") or []]
    except (ValueError, TypeError, KeyError, AttributeError):
        return Plan(Unmapped("compose without a readable sourceObjects list"))
    if method != "POST" or not sources:
        return Plan(Unmapped("compose needs POST and at least one source object"))
    doc["sourceObjects"] = [{**s, "name": stored_name(str(s["name"]))}
                            for s in doc["sourceObjects"]]
    if isinstance(doc.get("destination"), dict) and "name" in doc["destination"]:
        doc["destination"] = {**doc["destination"],
                              "name": stored_name(str(doc["destination"]["name"]))}
    needs = [*(Need("storage.objects.get", bucket, s) for s in sources),
             _create(bucket, dest, no_over)]
    path = f"/storage/v1/b/{_q(bucket)}/o/{_obj(dest)}/compose"
    return Plan(needs, path, q, json.dumps(doc).encode())


def _xml_api(method: str, seg: list[str], query: Sequence[tuple[str, str]]) -> Plan:
    q = list(query)
    seg = [s for s in seg if s != ""] if len(seg) == 1 else seg
    if not seg or not seg[0]:
        if method == "GET":
            return Plan([Need("storage.buckets.list", PROJECT_BUCKET)], "/", q)
        return Plan(Unmapped(f"XML {method} /"))
    bucket, name = seg[0], "/".join(seg[1:])
    if not name:
        if method == "GET":
            return Plan([Need("storage.objects.list", bucket, None, _first(q, "prefix"))],
                        f"/{_q(bucket)}", _rename(q))
        perm = {"PUT": "storage.buckets.create", "DELETE": "storage.buckets.delete"}.get(method)
        return Plan([Need(perm, bucket)], f"/{_q(bucket)}", q) if perm else Plan(
            Unmapped(f"XML {method} on a bucket"))
    path = f"/{_q(bucket)}/{quote(stored_name(name), safe='/')}"
    if method in {"GET", "HEAD"}:
        return Plan([Need("storage.objects.get", bucket, name)], path, q, data_answer=True)
    if method == "PUT":
        return Plan([_create(bucket, name, _first(q, "x-goog-if-generation-match") == "0")],
                    path, q)
    if method == "DELETE":
        return Plan([Need("storage.objects.delete", bucket, name)], path, q)
    return Plan(Unmapped(f"XML {method} on an object"))


def query_string(pairs: Sequence[tuple[str, str]]) -> str:
    return urlencode(list(pairs), quote_via=quote, safe="")
