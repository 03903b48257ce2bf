"""Parse and check `gs://bucket/prefix/` arguments (pure, no client import)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gpub_runner.contract import MANIFEST_NAME, OBJECT_NAME_MAX_BYTES

from submit.errors import SubmitError

# Bucket names: 3-63 chars of lowercase letters, digits, '-', '_' and '.', starting and ending
# with a letter or digit (dotted names may reach 222 chars; we accept that too).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f#\[\]*?]")


@dataclass(frozen=True, order=True)
class GcsPrefix:
    """A "folder" in a bucket: `prefix` is "" (bucket root) or ends with "/"."""

    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"

    def child(self, name: str) -> str:
        """Object name (not URI) of `name` relative to this prefix."""
        return self.prefix + name

    def uri(self, name: str) -> str:
        return f"gs://{self.bucket}/{self.prefix}{name}"

    def contains(self, other: GcsPrefix) -> bool:
        return self.bucket == other.bucket and other.prefix.startswith(self.prefix)


def parse_prefix(value: str, arg: str) -> GcsPrefix:
    """`gs://bucket/some/prefix[/]` -> GcsPrefix; SubmitError naming `arg` when malformed."""
    if not value.startswith("gs://"):
        raise SubmitError(f"{arg}: expected gs://BUCKET/PREFIX/; got {value!r}")
    bucket, _, prefix = value[len("gs://") :].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise SubmitError(f"{arg}: {bucket!r} is not a valid bucket name in {value!r}")
    if _BAD_CHARS.search(prefix):
        raise SubmitError(f"{arg}: prefix contains control or wildcard characters: {value!r}")
    if "//" in prefix or prefix.startswith("/"):
        raise SubmitError(f"{arg}: empty path segment ('//') in {value!r}")
    if any(seg in (".", "..") for seg in prefix.split("/")):
        raise SubmitError(f"{arg}: '.' and '..' segments are not allowed in {value!r}")
    # "gs://b/in" and "gs://b/in/" name the same folder (the runner reads them the same way).
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    # Object names are at most 1,024 bytes (https://cloud.google.com/storage/docs/naming-objects);
    # the folder must leave room for the files the run keeps in it.
    room = OBJECT_NAME_MAX_BYTES - len(MANIFEST_NAME)
    if len(prefix.encode()) > room:
        raise SubmitError(f"{arg}: the prefix is {len(prefix.encode()):,} bytes; object names "
                          f"are at most {OBJECT_NAME_MAX_BYTES:,} bytes, so a folder may have "
                          f"{room:,}")
    return GcsPrefix(bucket, prefix)


def check_disjoint(inp: GcsPrefix, out: GcsPrefix) -> None:
    """Outputs inside the input folder would be picked up as inputs by the next run (and the
    other way round would make the overwrite check meaningless)."""
    if inp.contains(out) or out.contains(inp):
        raise SubmitError(f"--output: {out} overlaps --input {inp}; use separate folders")
