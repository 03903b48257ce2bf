"""Test-only helper: an in-memory stand-in for gpub_runner.gcs.Store with Cloud Storage's
generation semantics (every write a new generation; `if_generation_match` preconditions; a
read pinned to a generation that is gone answers 404) and request counting."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

from google.api_core import exceptions as gexc
from gpub_runner import Item, Result, contract
from gpub_runner.config import Config, GcsUri
from gpub_runner.gcs import LIST_PAGE_SIZE, ObjectStat
from gpub_runner.logs import JsonLogger
from gpub_runner.runner import TaskRunner


class MemStore:
    """Keys are "bucket/name"; `objects` may be set directly (such objects have generation
    1 and no metadata, as if uploaded by a client)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gens: dict[str, int] = {}
        self.meta: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        self.fail_reads: dict[str, Exception] = {}
        self.requests: Counter[str] = Counter()
        self._next = 100

    @staticmethod
    def key(uri: GcsUri) -> str:
        return f"{uri.bucket}/{uri.name}"

    def generation(self, key: str) -> int:
        return self.gens.get(key, 1) if key in self.objects else 0

    def write(self, key: str, data: bytes, metadata: Mapping[str, str] | None = None) -> int:
        """Write as a client would: a new generation."""
        with self.lock:
            self._next += 1
            self.objects[key], self.gens[key] = bytes(data), self._next
            self.meta[key] = dict(metadata or {})
            return self._next

    def _count(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1

    def read(self, uri: GcsUri, *, generation: str | int | None = None,
             deadline_s: float | None = None) -> bytes:
        return self.fetch(uri, generation=generation, deadline_s=deadline_s)[0]

    def fetch(self, uri: GcsUri, *, generation: str | int | None = None,
              deadline_s: float | None = None) -> tuple[bytes, str | None]:
        self._count("get")
        if uri.name in self.fail_reads:
            raise self.fail_reads[uri.name]
        k = self.key(uri)
        if k not in self.objects or (generation not in (None, "")
                                     and int(generation) != self.generation(k)):  # type: ignore[arg-type]
            raise gexc.NotFound(f"{uri}")
        return self.objects[k], str(self.generation(k))

    def create(self, uri: GcsUri, data: bytes, content_type: str, *,
               metadata: Mapping[str, str] | None = None, if_generation_match: int = 0,
               deadline_s: float | None = None) -> bool:
        self._count("put")
        k = self.key(uri)
        with self.lock:
            if self.generation(k) != if_generation_match:
                return False
            self._next += 1
            self.objects[k], self.gens[k] = bytes(data), self._next
            self.meta[k] = dict(metadata or {})
            return True

    def put(self, uri: GcsUri, data: bytes, content_type: str) -> None:
        self._count("put")
        self.write(self.key(uri), data)

    def stat(self, uri: GcsUri) -> ObjectStat | None:
        self._count("stat")
        k = self.key(uri)
        if k not in self.objects:
            return None
        return ObjectStat(uri.name, str(self.generation(k)), len(self.objects[k]),
                          dict(self.meta.get(k, {})))

    def delete_if_exists(self, uri: GcsUri) -> None:
        self._count("delete")
        self.objects.pop(self.key(uri), None)

    def iter_objects(self, prefix: GcsUri, *, metadata: bool = False) -> Iterator[ObjectStat]:
        p = self.key(prefix)
        keys = sorted(k for k in self.objects if k.startswith(p))
        for i, k in enumerate(keys):
            if i % LIST_PAGE_SIZE == 0:
                self._count("list")
            yield ObjectStat(k.split("/", 1)[1], str(self.generation(k)), len(self.objects[k]),
                             dict(self.meta.get(k, {})) if metadata else {})
        if not keys:
            self._count("list")

    def list_objects(self, prefix: GcsUri, *, limit: int | None = None,
                     metadata: bool = False) -> list[ObjectStat] | None:
        out: list[ObjectStat] = []
        for obj in self.iter_objects(prefix, metadata=metadata):
            out.append(obj)
            if limit is not None and len(out) > limit:
                return None
        return out

    def list_names(self, prefix: GcsUri, *, limit: int | None = None) -> set[str] | None:
        found = self.list_objects(prefix, limit=limit)
        return None if found is None else {o.name for o in found}

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


def done(store: MemStore, i: int, generation: str = "1", suffix: str = ".out") -> bool:
    """Seeded input i's output exists and says it was made from generation `generation`."""
    meta = store.meta.get(f"bkt/out/d/f{i:03d}{suffix}", {})
    return (meta.get(contract.META_INPUT) == f"gs://bkt/in/d/f{i:03d}.jsonl"
            and meta.get(contract.META_GENERATION) == generation)


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
