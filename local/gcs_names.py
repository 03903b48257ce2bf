"""Cloud Storage names as GCS checks them, and the layout that keeps every name off host paths.

Naming rules (https://cloud.google.com/storage/docs/objects#naming): an object name is 1 to
1,024 bytes of UTF-8, contains no carriage return or line feed, is not `.` or `..`, and does
not start with `.well-known/acme-challenge/`. Everything else (`a/../b`, `//x`, `%2e`) is a
literal name: objects live in a flat namespace, a `/` is just a character. Bucket names
(https://cloud.google.com/storage/docs/buckets#naming): 3-63 characters (up to 222 with dots)
of lowercase letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.

fake-gcs-server's filesystem backend turns an object name into `<root>/<bucket>/<name>`, so a
`..` segment would leave the root and `.`/empty segments would alias another object. The IAM
layer therefore sends it `stored_name(name)`: a literal `%` becomes `%25`, then a segment that
is `''`, `.` or `..` gets `%00` appended (`%00`, `.%00`, `..%00`). The mapping is one-to-one,
leaves every name without `%` and without such segments unchanged, keeps prefixes prefixes
(`data/..` still matches `data/../x` and `data/..x`), and `listed_name` inverts it in
what the server answers.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

MAX_NAME_BYTES = 1024
ACME_CHALLENGE = ".well-known/acme-challenge/"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_MARK = "%00"
_SPECIAL = {"", ".", ".."}
_MARKED = {s + _MARK for s in _SPECIAL}


def object_name_error(name: str) -> str | None:
    """Why GCS refuses `name` as an object name, None when it is valid."""
    if name in {".", ".."}:
        return f"object name {name!r} is not allowed: an object cannot be named '.' or '..'"
    size = len(name.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_BYTES:
        return f"object name is {size} bytes of UTF-8; allowed: 1 to {MAX_NAME_BYTES}"
    if "\r" in name or "\n" in name:
        return "object name contains a carriage return or line feed, which GCS refuses"
    if name.startswith(ACME_CHALLENGE):
        return f"object name may not start with {ACME_CHALLENGE!r}"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "object name is not valid UTF-8"
    return None


def bucket_name_error(bucket: str) -> str | None:
    """Why `bucket` is not a bucket name GCS could have created, None when it is valid."""
    dotted_ok = ".." not in bucket and all(len(p) <= 63 for p in bucket.split("."))
    if _BUCKET_RE.fullmatch(bucket) and (len(bucket) <= 63 or "." in bucket) and dotted_ok:
        return None
    return (f"bucket name {bucket!r} is not valid: 3-63 lowercase letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit")


def _store_segment(segment: str) -> str:
    escaped = segment.replace("%", "%25")
    return escaped + _MARK if escaped in _SPECIAL else escaped


def _list_segment(segment: str) -> str:
    return segment.removesuffix(_MARK) if segment in _MARKED else segment.replace("%25", "%")


def stored_name(name: str) -> str:
    """The name fake-gcs-server stores `name` under (a safe relative path)."""
    return "/".join(_store_segment(s) for s in name.split("/"))


def listed_name(stored: str) -> str:
    """The GCS name of an object fake-gcs-server stores as `stored`."""
    return "/".join(_list_segment(s) for s in stored.split("/"))


def stored_prefix(prefix: str) -> str:
    """A list prefix in the stored layout: whole segments encoded, the last (partial) one only
    `%`-escaped, so `data/a` still matches `data/abc` and `data/a/x`, and `data/..`
    both `data/../x` (stored `data/..%00/x`) and `data/..x`."""
    head, sep, last = prefix.rpartition("/")
    encoded_head = stored_name(head) + sep if sep else ""
    return encoded_head + last.replace("%", "%25")


def needs_listing_fix(body: bytes) -> bool:
    """Whether an answer may carry a stored name that differs from its GCS name (every such
    name contains `%25` or `%00`; %-encoded into a link, `%25`)."""
    return b"%25" in body or b"%00" in body


def _fix_object(obj: dict[str, Any]) -> None:
    stored = obj.get("name")
    if not isinstance(stored, str) or (real := listed_name(stored)) == stored:
        return
    obj["name"] = real
    if isinstance(obj.get("id"), str):
        obj["id"] = obj["id"].replace(stored, real, 1)
    for link in ("selfLink", "mediaLink"):
        if isinstance(obj.get(link), str):
            for safe in ("", "$&+,:;=@"):  # Python's quote, Go's url.PathEscape
                obj[link] = obj[link].replace(quote(stored, safe=safe), quote(real, safe=safe))


def _fix(value: Any) -> None:
    if isinstance(value, dict):
        if value.get("kind") == "storage#object":
            _fix_object(value)
        if isinstance(value.get("prefixes"), list):
            value["prefixes"] = [listed_name(p) if isinstance(p, str) else p
                                 for p in value["prefixes"]]
        for v in value.values():
            _fix(v)
    elif isinstance(value, list):
        for v in value:
            _fix(v)


_XML_NAME = re.compile(rb"<(Key|Prefix)>([^<]*)</(?:Key|Prefix)>")


def listed_body(body: bytes, content_type: str) -> bytes:
    """The storage server's answer with every stored name turned back into its GCS name."""
    if not needs_listing_fix(body):
        return body
    if "json" in content_type:
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        _fix(doc)
        return json.dumps(doc).encode()
    if "xml" in content_type:
        return _XML_NAME.sub(lambda m: b"<%s>%s</%s>" % (
            m.group(1), listed_name(m.group(2).decode()).encode(), m.group(1)), body)
    return body
