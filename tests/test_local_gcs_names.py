"""The stored layout of object names (`local.gcs_names`): one-to-one, never a dot or empty
segment, prefixes kept, and GCS's naming rules."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from local.gcs_names import (
    bucket_name_error,
    listed_body,
    listed_name,
    object_name_error,
    stored_name,
    stored_prefix,
)

# Few characters, so that dots, slashes and escapes meet often.
NAMES = st.text(alphabet="a/.%025", min_size=1, max_size=12)


@given(NAMES)
def test_the_layout_is_one_to_one_and_never_has_a_dot_segment(name: str) -> None:
    stored = stored_name(name)
    assert listed_name(stored) == name
    assert not {"", ".", ".."} & set(stored.split("/"))


@given(NAMES, NAMES)
def test_distinct_names_are_stored_apart(a: str, b: str) -> None:
    assert (stored_name(a) == stored_name(b)) == (a == b)


@given(NAMES, st.text(alphabet="a/.%025", max_size=8))
def test_a_prefix_matches_what_it_matches_on_gcs(name: str, prefix: str) -> None:
    assert stored_name(name).startswith(stored_prefix(prefix)) == name.startswith(prefix)


def test_names_without_special_segments_are_stored_as_they_are() -> None:
    assert stored_name("inputs/j/b1/a.txt") == "inputs/j/b1/a.txt"
    assert stored_name("a/../b") == "a/..%00/b"
    assert stored_name("100%") == "100%25"


def test_gcs_naming_rules() -> None:
    # https://cloud.google.com/storage/docs/objects#naming
    assert object_name_error("a/../b") is None  # a literal name on GCS
    assert object_name_error("x" * 1024) is None
    assert "1025 bytes" in (object_name_error("x" * 1025) or "")
    assert "1026 bytes" in (object_name_error("é" * 513) or "")  # bytes, not characters
    for bad in (".", "..", "a\nb", "a\rb", ".well-known/acme-challenge/t", ""):
        assert object_name_error(bad), bad
    assert object_name_error("a\tb") is None  # only CR and LF are refused
    assert bucket_name_error("demo-proj-acme") is None
    for bad in ("..", "bk", "Upper", "-x-", "a" * 64):
        assert bucket_name_error(bad), bad


def test_answers_get_their_gcs_names_back() -> None:
    body = (b'{"kind": "storage#objects", "prefixes": ["a/..%00/"], "items": [{"kind": '
            b'"storage#object", "name": "a/..%00/b", "bucket": "bkt", "id": "bkt/a/..%00/b/1",'
            b' "selfLink": "http://h/storage/v1/b/bkt/o/a%2F..%2500%2Fb"}]}')
    doc = json.loads(listed_body(body, "application/json"))
    item = doc["items"][0]
    assert doc["prefixes"] == ["a/../"] and item["name"] == "a/../b"
    assert item["id"] == "bkt/a/../b/1" and item["selfLink"].endswith("/o/a%2F..%2Fb")
    plain = b'{"kind": "storage#object", "name": "a/b"}'
    assert listed_body(plain, "application/json") is plain  # nothing to undo: untouched
