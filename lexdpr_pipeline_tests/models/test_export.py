"""ONNX export of the tiny test model: round trip, int8, the gate on a broken export, nothing partial on errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, Kind
from lexdpr_pipeline.models import export as export_mod
from lexdpr_pipeline.models.biencoder import BiEncoder, Template
from lexdpr_pipeline.models.export import ExportError, export_encoder, export_key, export_to_store, load_encoder
from lexdpr_pipeline.models.onnx_encoder import ExportFormatError, OnnxEncoder, pool, token_budget_batches
from lexdpr_pipeline.models.quality_gate import quality_gate
from lexdpr_pipeline_tests.tiny_model import korean_lines

TEMPLATE = Template.custom("질의: ", "문서: ")
INT8_MIN_COSINE = 0.999  # measured on the tiny model: mean 0.99998, min 0.99996 over these texts
INT8_MEAN_COSINE = 0.9999


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """Real statute lines of very different lengths, plus some longer than max_seq_length (128 tokens)."""
    lines = korean_lines(limit=400)
    out = lines[:60:3] + [" ".join(lines[i : i + 12]) for i in range(100, 220, 12)]
    return [*out, "가", "민법 " * 300]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> BiEncoder:
    return BiEncoder.load(tiny_model_dir, template=TEMPLATE)


@pytest.fixture(scope="module")
def fp32_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_encoder(tiny_model_dir, tmp_path_factory.mktemp("export") / "fp32", "onnx", template=TEMPLATE)


@pytest.fixture(scope="module")
def int8_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_encoder(tiny_model_dir, tmp_path_factory.mktemp("export") / "int8", "onnx-int8", template=TEMPLATE)


def test_fp32_export_round_trips(fp32_dir: Path, reference: BiEncoder, texts: list[str]) -> None:
    enc = load_encoder(fp32_dir, threads=1, token_budget=300)  # a small budget: many batches of mixed padding
    for batch_size in (1, 4, 64):
        q = enc.encode_queries(texts, batch_size=batch_size)
        p = enc.encode_passages(texts, batch_size=batch_size)
        assert q.dtype == np.float32 and q.shape == (len(texts), 32)
        assert np.abs(q - reference.encode_queries(texts)).max() < 1e-4
        assert np.abs(p - reference.encode_passages(texts)).max() < 1e-4
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(q, p)  # the template's prefixes are applied
    assert enc.template == TEMPLATE and enc.backend == "onnx"
    assert enc.encode_passages([]).shape == (0, 32)


def test_export_folder_and_manifest(fp32_dir: Path, tiny_model_dir: Path) -> None:
    assert sorted(p.name for p in fp32_dir.iterdir()) == [
        "export.json",
        "lexdpr_template.json",
        "model.onnx",
        "tokenizer.json",
    ]
    info = json.loads((fp32_dir / "export.json").read_text(encoding="utf-8"))
    assert info["backend"] == "onnx" and info["onnx_file"] == "model.onnx"
    assert info["pooling_mode"] == ["mean"] and info["max_seq_length"] == 128 and info["dimension"] == 32
    assert info["exporter_version"] == export_mod.EXPORTER_VERSION
    assert info["source_hash"] and info["source_model"] == str(tiny_model_dir)
    assert {"torch", "transformers", "onnxruntime"} <= set(info["versions"])
    assert info["optimization"]["fused"].get("Attention")  # the fused attention path is what runs
    assert not [p for p in fp32_dir.parent.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_int8_export_is_close(int8_dir: Path, reference: BiEncoder, texts: list[str]) -> None:
    enc = load_encoder(int8_dir, threads=1)
    assert (int8_dir / "model_qint8.onnx").is_file() and not (int8_dir / "model.onnx").exists()
    info = json.loads((int8_dir / "export.json").read_text(encoding="utf-8"))
    assert info["quantization"] == {"method": "dynamic", "weight_type": "QInt8", "per_channel": True}
    cos = np.concatenate(
        [
            (enc.encode_passages(texts) * reference.encode_passages(texts)).sum(axis=1),
            (enc.encode_queries(texts) * reference.encode_queries(texts)).sum(axis=1),
        ]
    )
    assert cos.min() >= INT8_MIN_COSINE and cos.mean() >= INT8_MEAN_COSINE
    assert cos.min() < 1 - 1e-6  # it really is quantized, not the fp32 model under another name


def test_gate_passes_fp32_and_fails_broken_exports(
    fp32_dir: Path, reference: BiEncoder, texts: list[str], tmp_path: Path
) -> None:
    passages = {f"p{i}": t for i, t in enumerate(texts)}
    queries = {f"q{i}": t[:20] for i, t in enumerate(texts[:15])}
    qrels = {f"q{i}": {f"p{i}"} for i in range(15)}
    good = quality_gate(reference, load_encoder(fp32_dir, threads=1), passages, queries, qrels)
    assert good.passed and good.mean_cosine > 0.9999 and good.n_scored_queries == 15
    assert good.ndcg_reference == pytest.approx(good.ndcg_candidate, abs=1e-9)

    # Wrong pooling: the same weights pooled with the CLS vector instead of the mean.
    wrong_pool = tmp_path / "wrong_pool"
    shutil.copytree(fp32_dir, wrong_pool)
    info = json.loads((wrong_pool / "export.json").read_text(encoding="utf-8"))
    (wrong_pool / "export.json").write_text(json.dumps({**info, "pooling_mode": ["cls"]}), encoding="utf-8")
    report = quality_gate(reference, load_encoder(wrong_pool, threads=1), passages, queries, qrels)
    assert not report.passed and report.mean_cosine < 0.99
    assert any("mean cosine" in r for r in report.reasons)

    # Shuffled weights: every float initializer of the graph permuted.
    import onnx
    from onnx import numpy_helper

    shuffled = tmp_path / "shuffled"
    shutil.copytree(fp32_dir, shuffled)
    model = onnx.load(str(shuffled / "model.onnx"))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(rng.permutation(arr.ravel()).reshape(arr.shape), init.name))
    onnx.save(model, str(shuffled / "model.onnx"))
    report = quality_gate(reference, load_encoder(shuffled, threads=1), passages, queries, qrels)
    assert not report.passed and report.mean_cosine < 0.99


def test_failed_export_leaves_nothing(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "exports" / "x"
    # A mismatch the verification step catches (here: a tolerance nothing can meet) ...
    monkeypatch.setattr(export_mod, "_FP32_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="differs from the torch model"):
        export_encoder(tiny_model_dir, target, "onnx", template=TEMPLATE)
    assert not target.exists() and list(target.parent.iterdir()) == []
    monkeypatch.undo()

    # ... and a crash half-way through (after model.onnx was written).
    def boom(*_a: object, **_k: object) -> dict:
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(export_mod, "_quantize", boom)
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        export_encoder(tiny_model_dir, target, "onnx-int8", template=TEMPLATE)
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_export_key_and_store(
    tiny_model_dir: Path, fp32_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = export_key("hash-a", "onnx")
    assert len(key) == 64 and key == export_key("hash-a", "onnx")
    assert (
        len({key, export_key("hash-b", "onnx"), export_key("hash-a", "onnx-int8"), export_key("hash-a", "onnx", 2)})
        == 4
    )
    with pytest.raises(ValueError, match="unknown export backend"):
        export_key("hash-a", "openvino")

    store = ArtifactStore(tmp_path / "data")
    target = store.folder(Kind.ENCODER_EXPORT, export_key("hash-a", "onnx"))
    shutil.copytree(fp32_dir, target)  # as if an earlier run exported it
    monkeypatch.setattr(export_mod, "_torch_export", lambda *a, **k: pytest.fail("an existing export was redone"))
    assert export_to_store(store, tiny_model_dir, "hash-a", "onnx") == target
    assert target.parent == store.root(Kind.ENCODER_EXPORT)


def test_load_encoder_rejects_incomplete_exports(fp32_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportFormatError, match=r"no export\.json"):
        load_encoder(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(fp32_dir, broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ExportFormatError, match=r"model\.onnx is missing"):
        OnnxEncoder(broken)


def test_unsupported_model_is_refused(tmp_path: Path, tiny_tokenizer_dir: Path) -> None:
    """A module stack the exporter cannot reproduce (a Dense layer after pooling) is refused before anything is
    written."""
    from sentence_transformers import SentenceTransformer, models

    from lexdpr_pipeline_tests.tiny_model import build_tiny_model

    base = build_tiny_model(tmp_path / "st", tiny_tokenizer_dir, tmp_path / "hf")
    st = SentenceTransformer(str(base), device="cpu")
    dense = models.Dense(in_features=32, out_features=8)
    SentenceTransformer(modules=[st[0], st[1], dense], device="cpu").save(str(tmp_path / "dense"))
    with pytest.raises(ExportError, match="only Transformer -> Pooling"):
        export_encoder(tmp_path / "dense", tmp_path / "out", "onnx")
    assert not (tmp_path / "out").exists()


def test_token_budget_batches() -> None:
    lengths = [5, 100, 7, 40, 40, 3, 250, 1, 60]
    batches = token_budget_batches(lengths, token_budget=120, max_rows=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))  # every text exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for batch in batches:
        rows, longest = len(batch), max(lengths[i] for i in batch)
        assert rows <= 3 and (rows == 1 or rows * longest <= 120)
    assert [len(b) for b in batches] == [1, 1, 2, 3, 2]  # 250 | 100 | 60 40 | 40 7 5 | 3 1
    with pytest.raises(ValueError):
        token_budget_batches(lengths, token_budget=0, max_rows=3)


@pytest.mark.parametrize("mode", ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_pooling_matches_sentence_transformers(mode: str) -> None:
    import torch
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(3, 7, 4)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], dtype=np.int64)
    expected = Pooling(4, pooling_mode=mode)(
        {"token_embeddings": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(mask)}
    )["sentence_embedding"].numpy()
    assert np.allclose(pool(hidden, mask, [mode]), expected, atol=1e-5)
