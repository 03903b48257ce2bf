"""fake-gcs-server as the local backend starts it, driven by the real google-cloud-storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import google.cloud.storage as storage
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from local.gcs import gcs_ready, start_gcs
from local.procs import free_port, terminate

pytestmark = pytest.mark.slow


class _Gcs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.pid = 0

    def start(self) -> None:
        self.pid = start_gcs(self.root, self.port).pid

    def stop(self) -> None:
        terminate(self.pid, 5)


@pytest.fixture
def gcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gcs]:
    server = _Gcs(tmp_path)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
    try:
        yield server
    finally:
        server.stop()


def _client() -> storage.Client:
    return storage.Client(project="local", credentials=AnonymousCredentials())


def test_storage_client_round_trip(gcs: _Gcs) -> None:
    client = _client()
    bucket = client.create_bucket("data")
    blob = bucket.blob("in/a.txt")
    blob.upload_from_string(b"hello")
    assert blob.generation and int(blob.generation) > 0
    assert bucket.blob("in/a.txt").download_as_bytes() == b"hello"

    # Create-only precondition: the runtime's "never overwrite" write.
    bucket.blob("in/b.txt").upload_from_string(b"world", if_generation_match=0)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("in/b.txt").upload_from_string(b"again", if_generation_match=0)

    bucket.blob("other/c.txt").upload_from_string(b"x")
    assert [b.name for b in client.list_blobs("data", prefix="in/")] == ["in/a.txt", "in/b.txt"]

    # Overwrites bump the generation; generation-matched reads see the right one.
    first = bucket.get_blob("in/a.txt")
    assert first is not None
    bucket.blob("in/a.txt").upload_from_string(b"hello v2")
    second = bucket.get_blob("in/a.txt")
    assert second is not None and second.generation != first.generation
    assert second.download_as_bytes() == b"hello v2"
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob("in/a.txt").upload_from_string(
            b"stale", if_generation_match=first.generation
        )

    composed = bucket.blob("out/ab.txt")
    composed.compose([bucket.blob("in/a.txt"), bucket.blob("in/b.txt")])
    assert composed.download_as_bytes() == b"hello v2world"

    # Resumable (chunked) upload goes through the upload Location the server hands out.
    big = bytes(range(256)) * 20_000
    chunked = bucket.blob("in/big.bin", chunk_size=256 * 1024 * 4)
    chunked.upload_from_string(big)
    assert bucket.blob("in/big.bin").download_as_bytes() == big


def test_data_survives_restart(gcs: _Gcs) -> None:
    _client().create_bucket("keep").blob("x").upload_from_string(b"kept")
    gcs.stop()
    assert not gcs_ready(gcs.endpoint)
    gcs.start()
    assert _client().bucket("keep").blob("x").download_as_bytes() == b"kept"
    assert (gcs.root / "gcs").is_dir()
