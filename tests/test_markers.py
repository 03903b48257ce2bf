"""The `slow` marker means end to end: tests that start the local cloud's servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import starts_servers


def test_a_function_that_starts_a_server_is_recognised() -> None:
    def fixture() -> Iterator[str]:
        from tests._helpers.gcs_server import fake_gcs

        with fake_gcs() as url:
            yield url

    def unit() -> None:
        assert "fake_gcs" != "LocalBackend"  # names in text, no call

    assert starts_servers(fixture)
    assert not starts_servers(unit)


def test_this_unit_test_is_not_slow(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("slow") is None


def test_a_server_fixture_makes_its_tests_slow(request: pytest.FixtureRequest) -> None:
    """Every collected test that uses the IAM proxy fixture (fake-gcs-server + proxy) is
    `slow` although its module does not say so."""
    users = [i for i in request.session.items
             if "proxy" in getattr(i, "fixturenames", ()) and "test_local_iam" in i.nodeid]
    if not users:
        pytest.skip("tests/test_local_iam.py is not part of this run")
    assert all(i.get_closest_marker("slow") for i in users)
