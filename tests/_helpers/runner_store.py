"""The task runtime's test doubles: an in-memory store with the Store interface, a config,
seeded inputs and a run of the TaskRunner that returns its exit code and log lines."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence

from google.api_core import exceptions as gexc
from gpub_runner import Item, Result
from gpub_runner.config import Config, GcsUri
from gpub_runner.contract import done_marker_name
from gpub_runner.logs import JsonLogger
from gpub_runner.runner import TaskRunner


class MemStore:
    """Duck-typed stand-in for gpub_runner.gcs.Store."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.fail_reads: dict[str, Exception] = {}

    @staticmethod
    def key(uri: GcsUri) -> str:
        return f"{uri.bucket}/{uri.name}"

    def read(self, uri: GcsUri, *, generation: str | int | None = None,
             deadline_s: float | None = None) -> bytes:
        if uri.name in self.fail_reads:
            raise self.fail_reads[uri.name]
        try:
            return self.objects[self.key(uri)]
        except KeyError:
            raise gexc.NotFound(f"{uri}") from None

    def create(self, uri: GcsUri, data: bytes, content_type: str, *,
               deadline_s: float | None = None) -> bool:
        with self.lock:
            if self.key(uri) in self.objects:
                return False
            self.objects[self.key(uri)] = bytes(data)
            return True

    def put(self, uri: GcsUri, data: bytes, content_type: str) -> None:
        self.objects[self.key(uri)] = bytes(data)

    def exists(self, uri: GcsUri) -> bool:
        return self.key(uri) in self.objects

    def delete_if_exists(self, uri: GcsUri) -> None:
        self.objects.pop(self.key(uri), None)

    def list_names(self, prefix: GcsUri, *, limit: int | None = None) -> set[str] | None:
        p = self.key(prefix)
        names = {k.split("/", 1)[1] for k in self.objects if k.startswith(p)}
        return None if limit is not None and len(names) > limit else names

    def names(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


def make_cfg(n: int = 0, **env: str) -> Config:
    base = {
        "GPUB_HANDLER": "x:y", "GPUB_MANIFEST": "gs://bkt/out/_manifest.jsonl",
        "GPUB_INPUT_PREFIX": "gs://bkt/in/", "GPUB_OUTPUT_PREFIX": "gs://bkt/out/",
        "GPUB_BATCH_SIZE": "4", "GPUB_CONCURRENCY": "4",
    }
    base.update(env)
    return Config.from_env(base)


def seed(store: MemStore, n: int, bad: Sequence[int] = ()) -> None:
    lines = []
    for i in range(n):
        name = f"d/f{i:03d}.jsonl"
        store.objects[f"bkt/in/{name}"] = b"bad" if i in bad else f'{{"i": {i}}}\n'.encode()
        lines.append(json.dumps({"name": name, "size": 10, "generation": "1"}))
    store.objects["bkt/out/_manifest.jsonl"] = ("\n".join(lines) + "\n").encode()


def marker(i: int, generation: str = "1") -> str:
    """Key of the done marker of seeded input i (see `seed`)."""
    name = f"d/f{i:03d}.jsonl"
    return "bkt/out/" + done_marker_name(name, f"gs://bkt/in/{name}", generation)


def echo(batch: list[Item]) -> Sequence[Result]:
    out: list[Result] = []
    for item in batch:
        if item.data == b"bad":
            raise ValueError(f"cannot parse {item.name}")
        out.append(item.output(item.data.upper(), suffix=".out"))
    return out


def run(store: MemStore, cfg: Config, handler=echo, setup=None) -> tuple[int, list[dict]]:
    buf = io.StringIO()
    log = JsonLogger(buf, job="j")
    code = TaskRunner(cfg, store, handler, setup, log).run()  # type: ignore[arg-type]
    return code, [json.loads(line) for line in buf.getvalue().splitlines()]
