"""JSON API uploads, parsed strictly and rebuilt, so the storage server creates exactly the
object the IAM layer authorized.

Upload types (https://cloud.google.com/storage/docs/uploads-downloads#uploads,
https://cloud.google.com/storage/docs/json_api/v1/objects/insert):
- `media`: the body is the data, the object name is the `name` query parameter;
- `multipart`: `multipart/related`, the first part the JSON metadata, the second the data;
- `resumable`: the body of the first request is the JSON metadata (or empty).
The name may come from the query or the metadata; when both are given they must agree (the
layer never guesses which one the server would use). A multipart body is rebuilt with a
boundary of our own and the authorized (stored-layout) name in its metadata, so a body the
server could parse differently from us never reaches it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from email.message import Message

from local.gcs_names import stored_name


@dataclass(frozen=True)
class Upload:
    """What to forward: the object name (GCS name), the body and its content type."""

    name: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class UploadError:
    invalid: bool  # True: 400 (GCS refuses it too); False: the layer cannot authorize it
    message: str


def _boundary(content_type: str) -> str | None:
    msg = Message()
    msg["content-type"] = content_type
    value = msg.get_param("boundary")
    return value if isinstance(value, str) and value else None


def _multipart(body: bytes, content_type: str) -> tuple[bytes, bytes, str] | None:
    """(metadata JSON, data, data content type) of a two-part multipart/related body."""
    boundary = _boundary(content_type)
    if boundary is None:
        return None
    chunks = body.split(b"--" + boundary.encode())
    if len(chunks) != 4 or not chunks[3].startswith(b"--") or chunks[0].strip():
        return None
    parts = []
    for chunk in chunks[1:3]:
        if not (chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")):
            return None
        head, sep, payload = chunk[2:-2].partition(b"\r\n\r\n")
        if not sep:
            return None
        ctype = ""
        for line in head.split(b"\r\n"):
            key, _, val = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-type":
                ctype = val.strip()
        parts.append((ctype, payload))
    return parts[0][1], parts[1][1], parts[1][0] or "application/octet-stream"


def _metadata(text: bytes) -> dict[str, object] | None:
    try:
        meta = json.loads(text.strip() or b"{}")
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _name(query_name: str, meta: dict[str, object]) -> str | UploadError:
    meta_name = meta.get("name")
    if meta_name is not None and not isinstance(meta_name, str):
        return UploadError(True, "metadata.name must be a string")
    if query_name and meta_name and query_name != meta_name:
        return UploadError(True, f"the name parameter {query_name!r} and metadata.name "
                                 f"{meta_name!r} differ")
    name = query_name or meta_name or ""
    return name if name else UploadError(False, "upload without an object name")


def plan_upload(upload_type: str, query_name: str, body: bytes,
                content_type: str) -> Upload | UploadError:
    """The upload to forward for `uploadType=upload_type`."""
    if upload_type == "media":
        if not query_name:
            return UploadError(False, "a media upload needs the name parameter")
        return Upload(query_name, body, content_type)
    if upload_type == "multipart":
        parsed = _multipart(body, content_type)
        meta = _metadata(parsed[0]) if parsed else None
        if parsed is None or meta is None:
            return UploadError(True, "multipart upload: expected multipart/related with a JSON "
                                     "metadata part and a data part")
        name = _name(query_name, meta)
        if isinstance(name, UploadError):
            return name
        boundary = f"gpub_{uuid.uuid4().hex}"
        meta_json = json.dumps({**meta, "name": stored_name(name)}).encode()
        rebuilt = (f"--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n"
                   .encode() + meta_json
                   + f"\r\n--{boundary}\r\ncontent-type: {parsed[2]}\r\n\r\n".encode()
                   + parsed[1] + f"\r\n--{boundary}--\r\n".encode())
        return Upload(name, rebuilt, f'multipart/related; boundary="{boundary}"')
    if upload_type == "resumable":
        meta = _metadata(body)
        if meta is None:
            return UploadError(True, "resumable upload: the body must be JSON metadata")
        name = _name(query_name, meta)
        if isinstance(name, UploadError):
            return name
        out = json.dumps({**meta, "name": stored_name(name)}).encode() if "name" in meta else body
        return Upload(name, out, content_type or "application/json; charset=UTF-8")
    return UploadError(False, f"uploadType {upload_type!r} is not supported by the local IAM "
                              "layer (media, multipart, resumable)")
