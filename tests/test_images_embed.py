"""The GPU example on the CPU: normalised 384-dim vectors in Parquet, loaded offline."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None
    or importlib.util.find_spec("sentence_transformers") is None,
    reason="torch / sentence-transformers not installed (pip install -e '.[embed]')",
)


@pytest.fixture(scope="module")
def embed() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBED_DEVICE", "cpu")  # the CPU path, even where a GPU exists
        mp.setenv("HF_HUB_OFFLINE", "1")  # proves nothing is downloaded
        import embed_handler

        embed_handler._state.clear()
        embed_handler.setup()
        yield embed_handler
        embed_handler._state.clear()


def test_model_ships_in_the_wheel() -> None:
    import embed_handler

    path = Path(embed_handler.model_path())
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()


def test_cpu_embeddings_are_normalised_384_dim_parquet(embed: ModuleType) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from gpub_runner import Failure, Item, Output

    sentences = ["A cat sits on the mat.", "A kitten rests on a rug.",
                 "Quarterly revenue grew by ten percent."]
    good = "".join(json.dumps({"id": f"s{i}", "text": s}) + "\n" for i, s in enumerate(sentences))
    items = [Item("docs/a.jsonl", good.encode(), "gs://b/in/docs/a.jsonl"),
             Item("docs/bad.jsonl", b'{"title": "no text"}\n', "gs://b/in/docs/bad.jsonl")]
    results = embed.process(items)

    failure = next(r for r in results if isinstance(r, Failure))
    assert failure.item == "docs/bad.jsonl" and "text" in failure.error
    out = next(r for r in results if isinstance(r, Output))
    assert out.name == "docs/a.parquet"
    table = pq.read_table(io.BytesIO(out.data))
    assert table.column_names == ["id", "text", "embedding"]
    emb_type = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(emb_type) and emb_type.list_size == 384
    assert emb_type.value_type == pa.float32()
    assert table.column("id").to_pylist() == ["s0", "s1", "s2"]
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Semantics, not just shape: the two cat sentences are closer than cat vs revenue.
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert embed._state["precision"] == "fp32" and embed._state["device"] == "cpu"
