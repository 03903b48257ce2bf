"""`embed` handler throughput (sentences/s) on the device this machine has (CPU here).

Calls the image's handler in-process (`setup()` then `process()`) on JSON-lines inputs of
short sentences, as the runner would, and reports sentences/s with device, precision and
batch size. No GPU in this session; on a GPU machine run with EMBED_DEVICE=cuda.

    .venv/bin/python -m bench.embed                 # 8 files x 256 sentences
    .venv/bin/python -m bench.embed --quick         # 2 files x 32 sentences

The handler is `embed_handler`, installed from images/embed (bin/_bootstrap).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from bench._common import emit, machine, say


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--sentences", type=int, default=256, help="per file")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    files, per_file = (2, 32) if a.quick else (a.files, a.sentences)
    os.environ.setdefault("EMBED_DEVICE", "cpu")
    import embed_handler
    from gpub_runner import Item, Output

    t0 = time.perf_counter()
    embed_handler.setup()
    setup_s = time.perf_counter() - t0
    info = {k: v for k, v in embed_handler._state.items() if isinstance(v, str | int | float)}
    items = []
    for f in range(files):
        lines = [json.dumps({"id": f"{f}-{i}", "text": f"Product {i} of batch {f}: organic "
                             f"whole grain oat flakes with {i % 7} seeds and sea salt"})
                 for i in range(per_file)]
        items.append(Item(name=f"f{f}.jsonl", data=("\n".join(lines) + "\n").encode(),
                          uri=f"gs://b/in/f{f}.jsonl", generation=None))
    embed_handler.process(items[:1])  # warm-up (first call allocates)
    t0 = time.perf_counter()
    results = embed_handler.process(items)
    secs = time.perf_counter() - t0
    assert all(isinstance(r, Output) for r in results), results
    n = files * per_file
    emit("embed", "embed_cpu", sentences=n, seconds=round(secs, 3),
         sentences_per_s=round(n / secs, 1), setup_s=round(setup_s, 2),
         torch_threads=__import__("torch").get_num_threads(), **info, **machine())
    say(f"embed on {info.get('device', '?')} ({info.get('precision', '?')}, batch "
        f"{info.get('batch_size', '?')}): {n} sentences in {secs:.2f}s = {n / secs:.0f}/s "
        f"(model load {setup_s:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
