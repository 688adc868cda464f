"""Fusion tuned on valid, never on test: the pure choice, its storage, and the engine's ``search.fusion: auto``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lexdpr_pipeline.artifacts import ArtifactStore, FusionParams, IndexPointer
from lexdpr_pipeline.evaluation.fusion_tuning import (
    DEFAULT_DENSE_WEIGHT,
    DEFAULT_RRF_K,
    Candidate,
    fuse,
    fused_rankings,
    select,
    source_group,
    tune_fusion,
)
from lexdpr_pipeline.evaluation.queries import EvalQueries
from lexdpr_pipeline.search import fusion
from lexdpr_pipeline.search.engine import SearchEngine, _Retrieved, load_engine
from lexdpr_pipeline.settings import SearchSettings, load_settings
from lexdpr_pipeline_tests.evaluation.conftest import corpus_frame

N_FILLER = 30


def _queries(split: str, types: list[str]) -> EvalQueries:
    ids = [f"{split}:{i}" for i in range(len(types))]
    return EvalQueries(
        split,
        ids,
        [f"text {q}" for q in ids],
        types,
        {q: {f"gold:{q}"} for q in ids},
        {q: set() for q in ids},
        {q: "law" for q in ids},
    )


def _lists(queries: EvalQueries, dense_rank: dict[str, int], bm25_rank: dict[str, int]):
    """Scored dense and BM25 rankings in which the gold passage of query q sits at ``dense_rank[q]`` /
    ``bm25_rank[q]`` (1-based; 0: absent) among fillers. Fillers differ between the lists, so where gold ends up
    after fusion depends on the fusion parameters."""
    dense, bm25 = {}, {}
    for qid in queries.ids:
        for out, rank, tag, scale in ((dense, dense_rank[qid], "d", 1.0), (bm25, bm25_rank[qid], "b", 20.0)):
            ids = [f"{tag}{i}:{qid}" for i in range(N_FILLER)]
            if rank:
                ids.insert(rank - 1, f"gold:{qid}")
            out[qid] = [(pid, scale * (1.0 - i / 40)) for i, pid in enumerate(ids)]
    return dense, bm25


def _scenario(valid_dense_good_for: str):
    """Valid: dense finds ``valid_dense_good_for``'s gold at rank 1 and BM25 misses it; the other group the
    opposite. Test: the reverse of valid, so a choice made on test would differ."""
    types = ["law", "cross_law", "prec", "cross_prec"]
    valid, test = _queries("valid", types), _queries("test", types)

    def ranks(qs: EvalQueries, dense_good: str):
        d, b = {}, {}
        for qid, t in zip(qs.ids, qs.types, strict=True):
            good = source_group(t) == dense_good
            d[qid], b[qid] = (1, 0) if good else (0, 1)
        return d, b

    other = "prec" if valid_dense_good_for == "law" else "law"
    vd, vb = _lists(valid, *ranks(valid, valid_dense_good_for))
    td, tb = _lists(test, *ranks(test, other))
    return valid, test, vd, vb, td, tb


def test_query_types_map_to_source_groups() -> None:
    assert [source_group(t) for t in ("law", "admrul", "cross_law", "prec", "cross_prec", "odd")] == [
        "law",
        "law",
        "law",
        "prec",
        "prec",
        "all",
    ]


def test_fuse_is_the_engines_fusion() -> None:
    dense = [("a", 0.9), ("b", 0.5), ("c", 0.1)]
    bm25 = [("c", 12.0), ("d", 3.0), ("a", 1.0)]
    expected_rrf = fusion.rrf([["a", "b", "c"], ["c", "d", "a"]], k=5)
    assert fuse("rrf", dense, bm25, rrf_k=5) == sorted(expected_rrf.items(), key=lambda kv: (-kv[1], kv[0]))
    expected_w = fusion.weighted(dict(dense), dict(bm25), 0.3)
    assert (
        fuse("weighted", dense, bm25, dense_weight=0.3, depth=2)
        == sorted(expected_w.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    )
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("max", dense, bm25)


def test_the_choice_is_made_on_valid_and_a_test_change_cannot_change_it() -> None:
    valid, test, vd, vb, td, tb = _scenario("prec")
    queries = {"valid": valid, "test": test}
    tuning = tune_fusion({"valid": vd, "test": td}, {"valid": vb, "test": tb}, queries)
    assert tuning.chosen_on == "valid" and tuning.metric == "ndcg@10"
    # prec: dense is right on valid → the weighted fusion leans to dense; law: to BM25.
    assert tuning.by_method["weighted"]["prec"].dense_weight > 0.5 > tuning.by_method["weighted"]["law"].dense_weight
    assert tuning.best["prec"].valid_score == pytest.approx(1.0) and tuning.best["law"].valid_score == pytest.approx(1)
    assert tuning.best["law"].n_queries == 2 and tuning.best["all"].n_queries == 4

    # Any change of the test split — its rankings made perfect for the other side, or dropped — changes nothing.
    flipped = tune_fusion({"valid": vd, "test": tb}, {"valid": vb, "test": td}, queries)
    gone = tune_fusion({"valid": vd}, {"valid": vb}, {"valid": valid})
    assert flipped.by_method == tuning.by_method == gone.by_method and flipped.best == tuning.best

    # The same change on valid does change it (the choice is not a constant).
    valid2, _, vd2, vb2, _, _ = _scenario("law")
    other = tune_fusion({"valid": vd2, "test": td}, {"valid": vb2, "test": tb}, {"valid": valid2, "test": test})
    assert other.by_method["weighted"]["law"].dense_weight > 0.5 > other.by_method["weighted"]["prec"].dense_weight

    # Applied per query type: on test (the reverse of valid) the tuned weighted hybrid follows valid's lesson.
    types = test.type_of()
    hybrid = fused_rankings(td, tb, lambda q: tuning.choice_for(types[q], "weighted"), depth=10)
    prec_q = next(q for q in test.ids if types[q] == "prec")
    assert hybrid[prec_q][0][0] != f"gold:{prec_q}"  # valid said "trust dense for prec"; on test dense misses it


def test_without_valid_queries_the_defaults_are_kept_and_labelled() -> None:
    test = _queries("test", ["law", "prec"])
    td, tb = _lists(test, {q: 1 for q in test.ids}, {q: 0 for q in test.ids})
    tuning = tune_fusion({"test": td}, {"test": tb}, {"test": test})
    assert tuning.chosen_on.startswith("defaults")
    for choice in tuning.best.values():
        assert (choice.fusion, choice.rrf_k, choice.dense_weight, choice.valid_score) == (
            "rrf",
            DEFAULT_RRF_K,
            DEFAULT_DENSE_WEIGHT,
            None,
        )


def test_select_breaks_ties_toward_the_defaults() -> None:
    flat = {c: {"q1": 0.5} for c in (Candidate("rrf", 5), Candidate("rrf", 60), Candidate("rrf", 100))}
    flat |= {c: {"q1": 0.5} for c in (Candidate("weighted", 0.1), Candidate("weighted", 0.5))}
    picked = select(flat, {"q1": "law"})
    assert picked["rrf"]["law"][0] == Candidate("rrf", 60) and picked["weighted"]["law"][0].value == 0.5
    assert picked["rrf"]["prec"] == (Candidate("rrf", DEFAULT_RRF_K), None, 0)  # no prec query


def _params(version: str = "mv1") -> FusionParams:
    return FusionParams(
        model_version=version,
        by_source={
            "law": {"fusion": "rrf", "rrf_k": 5, "dense_weight": 0.2},
            "prec": {"fusion": "weighted", "rrf_k": 60, "dense_weight": 0.9},
            "all": {"fusion": "rrf", "rrf_k": 100, "dense_weight": 0.5},
        },
    )


def test_fusion_params_are_stored_per_model_version(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.find_fusion_params("mv1") is None
    path = store.write_fusion_params(_params())
    assert path.parent.parent == store.data_dir / "indexes" / "fusion"
    assert store.find_fusion_params("mv1") == _params() == store.find_fusion_params("mv1|onnx-int8")
    assert store.find_fusion_params("mv2") is None
    long_hash = "ab" * 32
    assert store.fusion_params_path(long_hash).parent.name == long_hash[:20]


def _bare_engine(fusion_setting: str, params: FusionParams | None) -> SearchEngine:
    engine = SearchEngine(
        corpus_frame(), model=None, dense=None, bm25=None, settings=SearchSettings(fusion=fusion_setting)
    )
    engine.fusion_params = params
    return engine


@pytest.mark.parametrize(
    ("dense_ids", "bm25_ids", "expect"),
    [
        (["law:1:750", "law:1:751", "law:1:390"], ["law:1:390", "law:1:103"], ("rrf", 5)),  # statutes only → law
        (["prec:10#1", "prec:20#1", "prec:30#1"], ["prec:30#1", "prec:40#0"], ("weighted", 0.9)),  # decisions → prec
        (["law:1:750", "prec:20#1", "prec:30#1"], ["prec:30#1", "law:1:103"], ("rrf", 100)),  # mixed → all
    ],
)
def test_engine_auto_fusion_uses_the_stored_choice_per_source(dense_ids, bm25_ids, expect) -> None:
    engine = _bare_engine("auto", _params())
    row = {pid: i for i, pid in enumerate(engine._pid)}
    dense = _Retrieved([row[p] for p in dense_ids], [0.9, 0.6, 0.2], False)
    bm25 = _Retrieved([row[p] for p in bm25_ids], [9.0, 1.0], False)
    got = engine._fuse("hybrid", dense, bm25)
    method, value = expect
    if method == "rrf":
        scored = fusion.rrf([dense.rows, bm25.rows], k=int(value))
    else:
        scored = fusion.weighted(
            dict(zip(dense.rows, dense.scores, strict=True)), dict(zip(bm25.rows, bm25.scores, strict=True)), value
        )
    assert got == sorted(scored.items(), key=lambda kv: (-kv[1], engine._pid[kv[0]]))
    # Without stored params, auto is plain rrf with search.rrf_k.
    plain = _bare_engine("auto", None)._fuse("hybrid", dense, bm25)
    assert plain == sorted(
        fusion.rrf([dense.rows, bm25.rows], k=60).items(), key=lambda kv: (-kv[1], engine._pid[kv[0]])
    )


def test_load_engine_attaches_the_served_models_fusion_only_for_auto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heavy parts (FAISS, the encoder) are stand-ins: what is under test is which params the engine gets."""
    import lexdpr_pipeline.index.faiss_index as faiss_index
    import lexdpr_pipeline.models.encoders as encoders

    corpus_path = tmp_path / "corpus.parquet"
    corpus_frame().drop("aliases").write_parquet(corpus_path)
    fake_dense = SimpleNamespace(spec=SimpleNamespace(faiss_type="flat"), ids_by_label=[], ids=[])
    monkeypatch.setattr(faiss_index.DenseIndex, "load", classmethod(lambda cls, *a, **k: fake_dense))
    monkeypatch.setattr(encoders, "load_encoder", lambda *a, **k: object())
    pointer = IndexPointer("/m", "mv1|onnx-int8", "/faiss", "flat", str(corpus_path), encoder_backend="onnx-int8")
    data = tmp_path / "data"

    def engine(fusion_setting: str) -> SearchEngine:
        settings = load_settings(overrides=[f"paths.data_dir={data}", f"search.fusion={fusion_setting}"], environ={})
        return load_engine(settings, pointer)

    assert engine("auto").fusion_params is None  # nothing stored yet: rrf fallback
    ArtifactStore(data).write_fusion_params(_params("mv1"))
    assert engine("auto").fusion_params == _params("mv1")  # the torch model's choice serves its ONNX export
    assert engine("rrf").fusion_params is None
