"""``lex-dpr search / embed / embed-text / api`` through Typer's CliRunner, on a real tiny index (tiny model, tiny
corpus) published under a temporary data dir, except where a fake engine is patched in (said so there)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lexdpr_pipeline import cli
from lexdpr_pipeline.artifacts import ArtifactStore
from lexdpr_pipeline.models.biencoder import BiEncoder, Template
from lexdpr_pipeline.models.resolve import ModelChoice, choose_model, model_for_serving
from lexdpr_pipeline.settings import load_settings
from lexdpr_pipeline_tests.api.fakes import FakeEngine
from lexdpr_pipeline_tests.api.tiny_index import build_tiny_index

runner = CliRunner()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("cli-data")
    build_tiny_index(root, tiny_model_dir, "v1")
    return root


@pytest.fixture(scope="module")
def prefixed_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with a saved template whose prefixes differ (in its vocabulary: e5's English prefixes would
    both be [UNK]), so query and passage embeddings differ."""
    out = tmp_path_factory.mktemp("tiny-prefixed") / "model"
    shutil.copytree(tiny_model_dir, out)
    Template.custom("청구: ", "조문: ").save(out)
    return out


def invoke(data_dir: Path, *args: str):
    return runner.invoke(cli.app, ["--set", f"paths.data_dir={data_dir}", *args])


# search --------------------------------------------------------------------------------------------------------------


def test_search_prints_numbered_results(data_dir: Path) -> None:
    result = invoke(data_dir, "search", "채무불이행 손해배상 청구", "--mode", "bm25", "--top-k", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].lstrip().startswith("1.")
    assert "민법 제390조(채무불이행과 손해배상)" in lines[0] and "law:001706:390" in lines[0] and "bm25" in lines[0]
    assert "채무자가 채무의 내용에" in lines[1]  # the snippet
    assert sum(1 for ln in lines if ln.lstrip()[:2] in ("1.", "2.")) == 2


def test_search_json_with_filters(data_dir: Path) -> None:
    result = invoke(
        data_dir, "search", "손해배상", "--json", "--mode", "dense", "--source", "prec", "--court", "대법원",
        "--from", "2019-01-01", "--to", "2019-12-31",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["index_version"] == "index-v1" and payload["mode"] == "dense"
    assert [r["doc_id"] for r in payload["results"]] == ["prec:100001"]
    assert payload["results"][0]["dense_score"] is not None


@pytest.mark.parametrize(
    "args",
    [
        [],  # neither a query nor --queries
        ["q", "--queries", "x.jsonl"],  # both
        ["q", "--mode", "fuzzy"],
        ["q", "--source", "blog"],
        ["q", "--from", "2020-02-30"],
        ["q", "--from", "2021-01-01", "--to", "2020-01-01"],
        ["--queries", "in.jsonl"],  # no --output
    ],
)
def test_search_rejects_bad_options(data_dir: Path, args: list[str]) -> None:
    result = invoke(data_dir, "search", *args)
    assert result.exit_code == 2, result.output


def test_search_without_an_index_says_what_to_do(tmp_path: Path) -> None:
    result = invoke(tmp_path, "search", "손해배상")
    assert result.exit_code == 1
    assert "cannot load the search index" in result.output and "faiss_index" in result.output


def test_batch_search_writes_results_and_reports_bad_lines(data_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "in.jsonl"
    queries.write_text(
        "\n".join(
            [
                json.dumps({"qid": "q1", "text": "채무불이행 손해배상 청구"}, ensure_ascii=False),
                "{not json",
                json.dumps({"qid": 2, "text": "보통재판적 관할 법원"}, ensure_ascii=False),
                json.dumps({"text": "qid 없음"}, ensure_ascii=False),
                json.dumps({"qid": "q1", "text": "repeated"}),
                json.dumps({"qid": "q4", "text": "   "}),
                json.dumps(["a list"]),
                "",
                json.dumps({"qid": "q5", "text": "임대차 보증금 반환"}, ensure_ascii=False),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out" / "results.jsonl"
    result = invoke(data_dir, "search", "--queries", str(queries), "--output", str(out), "--mode", "bm25", "-k", "3")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["qid"] for r in rows] == ["q1", 2, "q5"]  # input order, qid types kept
    assert rows[0]["results"][0]["doc_id"] == "law:001706:390"
    assert rows[1]["results"][0]["doc_id"] == "law:001692:2"
    assert rows[2]["results"][0]["doc_id"] == "prec:100002"
    for row in rows:
        scores = [r["score"] for r in row["results"]]
        assert scores == sorted(scores, reverse=True) and len(row["results"]) <= 3
        assert set(row["results"][0]) >= {"doc_id", "passage_id", "score", "rank", "bm25_score"}
    assert "3 of 8 queries searched" in result.output and "5 skipped" in result.output
    for reason in ("invalid JSON", "missing qid", "repeated qid", "blank text", "not a JSON object"):
        assert reason in result.output
    assert "line 2 (invalid JSON)" in result.output
    assert not list(out.parent.glob(".*.tmp"))  # no temp file left behind


def test_batch_search_isolates_a_failing_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake engine (patched in for the CLI's engine loader) whose search_many fails for a batch holding "BOOM":
    # the batch is retried query by query, and only the bad one is lost.
    engine = FakeEngine(fail_on="BOOM")
    monkeypatch.setattr(cli, "_load_engine", lambda settings: engine)
    queries = tmp_path / "in.jsonl"
    queries.write_text(
        "".join(json.dumps({"qid": f"q{i}", "text": t}) + "\n" for i, t in enumerate(["a", "BOOM", "c", "d"])),
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = invoke(tmp_path, "search", "--queries", str(queries), "--output", str(out), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["qid"] for line in out.read_text().splitlines()] == ["q0", "q2", "q3"]
    assert "search error: 1" in result.output
    assert engine.calls[-1]["top_k"] == 100  # the batch default


def test_batch_search_with_nothing_usable_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_load_engine", lambda settings: FakeEngine())  # no index needed for this check
    queries = tmp_path / "in.jsonl"
    queries.write_text("garbage\n{}\n", encoding="utf-8")
    result = invoke(tmp_path, "search", "--queries", str(queries), "--output", str(tmp_path / "o.jsonl"))
    assert result.exit_code == 1
    assert "0 of 2 queries searched" in result.output


# embed ---------------------------------------------------------------------------------------------------------------


def test_embed_jsonl_to_npz(tmp_path: Path, prefixed_model_dir: Path) -> None:
    src = tmp_path / "texts.jsonl"
    src.write_text(
        '{"id": "a", "text": "불법행위"}\nnot json\n{"id": "b", "text": "손해배상 청구"}\n{"id": "c"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "emb.npz"
    result = invoke(tmp_path, "embed", "--input", str(src), "--type", "query", "--output", str(out),
                    "--model", str(prefixed_model_dir))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 lines skipped" in result.output and "line 2 (invalid JSON)" in result.output
    with np.load(out, allow_pickle=False) as data:
        assert data["ids"].tolist() == ["a", "b"]
        matrix = data["embeddings"]
        assert str(data["model"]) == choose_model(str(prefixed_model_dir), None, None).version
    assert matrix.shape == (2, 32) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    model = BiEncoder.load(prefixed_model_dir)
    np.testing.assert_allclose(matrix, model.encode_queries(["불법행위", "손해배상 청구"]), atol=1e-5)
    assert not np.allclose(matrix, model.encode_passages(["불법행위", "손해배상 청구"]), atol=1e-4)


def test_embed_txt_to_npy_with_passage_template(tmp_path: Path, prefixed_model_dir: Path) -> None:
    src = tmp_path / "texts.txt"
    src.write_text("민법 제750조\n\n불법행위의 내용\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    result = invoke(
        tmp_path, "embed", "-i", str(src), "-t", "passage", "-o", str(out), "--model", str(prefixed_model_dir)
    )
    assert result.exit_code == 0, result.output
    matrix = np.load(out, allow_pickle=False)
    expected = BiEncoder.load(prefixed_model_dir).encode_passages(["민법 제750조", "불법행위의 내용"])
    np.testing.assert_allclose(matrix, expected, atol=1e-5)
    assert "blank line: 1" in result.output


def test_embed_defaults_to_the_served_model(data_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("손해배상\n", encoding="utf-8")
    out = tmp_path / "e.npz"
    result = invoke(data_dir, "embed", "-i", str(src), "-t", "query", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "index pointer" in result.output
    with np.load(out, allow_pickle=False) as data:
        assert str(data["model"]) == "model-v1"
        np.testing.assert_allclose(data["embeddings"], BiEncoder.load(tiny_model_dir).encode_queries(["손해배상"]),
                                   atol=1e-5)  # fmt: skip


def test_model_choice_without_an_index(tmp_path: Path, tiny_model_dir: Path, prefixed_model_dir: Path) -> None:
    settings = load_settings(overrides=[f"paths.data_dir={tmp_path}", f"models.base_model={tiny_model_dir}"])

    def resolve_model(settings, explicit=None):
        store = ArtifactStore.from_settings(settings)
        return model_for_serving(settings.embed.model, settings.models.base_model, store, explicit)

    chosen = resolve_model(settings)  # embed.model=trained, nothing trained, no index: the base model
    assert chosen.path == str(tiny_model_dir.resolve()) and "no model is trained yet" in chosen.origin
    settings.embed.model = str(prefixed_model_dir)
    assert resolve_model(settings).path == str(prefixed_model_dir.resolve())
    trained = tmp_path / "tables" / "trained_model.json"
    trained.parent.mkdir(parents=True)
    trained.write_text(json.dumps({"path": str(prefixed_model_dir), "content_hash": "abc"}), encoding="utf-8")
    settings.embed.model = "trained"
    assert resolve_model(settings) == ModelChoice(str(prefixed_model_dir), "abc", "embed.model=trained")
    assert resolve_model(settings, tiny_model_dir).origin == "--model"  # --model wins over everything


@pytest.mark.parametrize(
    "args",
    [
        ["-i", "missing.txt", "-t", "query", "-o", "x.npy"],
        ["-i", "{src}", "-t", "document", "-o", "x.npy"],
        ["-i", "{src}", "-t", "query", "-o", "x.csv"],
        ["-i", "{src}", "-t", "query", "-o", "x.npy", "--model", "/no/such/model"],
    ],
)
def test_embed_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    src = tmp_path / "t.txt"
    src.write_text("text\n", encoding="utf-8")
    result = invoke(tmp_path, "embed", *[a.replace("{src}", str(src)) for a in args])
    assert result.exit_code in (1, 2), result.output
    assert not (tmp_path / "x.npy").exists()


def test_embed_text_prints_json(tmp_path: Path, prefixed_model_dir: Path) -> None:
    result = invoke(
        tmp_path, "embed-text", "불법행위", "손해배상", "--type", "passage", "--model", str(prefixed_model_dir)
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["type"] == "passage" and payload["dim"] == 32 and len(payload["embeddings"]) == 2
    expected = BiEncoder.load(prefixed_model_dir).encode_passages(["불법행위", "손해배상"])
    np.testing.assert_allclose(np.asarray(payload["embeddings"]), expected, atol=1e-5)


# api -----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """`lex-dpr api` hands its settings to uvicorn workers through os.environ; put it back afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_api_command_starts_uvicorn_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_environ: None
) -> None:
    import uvicorn

    from lexdpr_pipeline.api.app import OVERRIDES_ENV, create_app_from_env

    calls: list[tuple] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: calls.append((target, kwargs)))
    config = tmp_path / "lexdpr.yaml"
    config.write_text("api:\n  port: 9123\n  max_texts: 7\n", encoding="utf-8")
    os.environ["LEXDPR_CONFIG"] = "placeholder"  # the command replaces it with --config's absolute path
    result = runner.invoke(
        cli.app, ["--config", str(config), "--set", f"paths.data_dir={tmp_path}", "api", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    target, kwargs = calls[0]
    assert target == "lexdpr_pipeline.api.app:create_app_from_env" and kwargs["factory"] is True
    assert kwargs["host"] == "127.0.0.1" and kwargs["port"] == 9123 and kwargs["workers"] == 2
    assert kwargs["timeout_worker_healthcheck"] == 60 and kwargs["access_log"] is False
    assert json.loads(os.environ[OVERRIDES_ENV]) == [f"paths.data_dir={tmp_path}"]
    assert os.environ["LEXDPR_CONFIG"] == str(config.resolve())
    # a worker process builds its app from the environment the command left: same config file, same --set
    app = create_app_from_env()
    assert app.state.settings.api.max_texts == 7
    assert app.state.settings.paths.data_dir == tmp_path


def test_api_command_warns_when_exposed_without_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_environ: None
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda target, **kwargs: None)
    monkeypatch.delenv("LEXDPR_API_KEY", raising=False)
    result = invoke(tmp_path, "api", "--host", "0.0.0.0", "--port", "9999")
    assert result.exit_code == 0, result.output
    assert "without an API key" in result.output
