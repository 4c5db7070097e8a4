"""Typed stage contracts: every stage's `metrics.json` and `ledger.json` as a pydantic model, and one table of stages.

Producers write through `write_metrics(out, Model(...))` (or `Model.model_validate(d)`); the report, the Prefect
summary artifact and `fraudslm diff` read through `read_metrics(folder, Model)` / `Model.model_validate`. The models
allow extra keys (`extra="allow"`) so a stage may record more than the contract names; the keys DESIGN.md and the
issues name are typed fields, and their JSON spelling is stable for users.

Files a stage writes beside its outputs (see `write_metrics`):

* `metrics.json`   the full, deterministic metrics (identical inputs + params -> identical bytes), in git;
* `timings.json`   the volatile figures (seconds, latencies, throughput) the model lists in `VOLATILE`; neither in
                   git nor declared to DVC, so a re-run leaves `git status` and `dvc.lock` clean;
* `headline.json`  a few flat figures (`HEADLINE`), declared under `metrics:` in dvc.yaml so `dvc metrics show`
                   and `dvc exp show` lead with model and data-quality figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional, Type, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ConfigError

METRICS_FILE = "metrics.json"
LEDGER_FILE = "ledger.json"
TIMINGS_FILE = "timings.json"
HEADLINE_FILE = "headline.json"
PROVENANCE_FILE = "provenance.json"
# the per-source accounting columns of every ledger: read = accepted + quarantined + duplicates + dropped
LEDGER_KEYS = ("read", "accepted", "quarantined", "duplicates", "dropped")


class _Open(BaseModel):
    """A contract part that names its keys but accepts more (a stage may record extra figures)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


# ---------------------------------------------------------------------------------------------------------------
# ledgers


class LedgerSource(_Open):
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    dropped: int = 0
    reasons: dict[str, int] = Field(default_factory=dict)
    sha256: Optional[str] = None
    bytes: Optional[int] = None

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.quarantined + self.duplicates + self.dropped


class LedgerTotals(_Open):
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    dropped: int = 0


class StageLedger(_Open):
    """`ledger.json`: records in = out + quarantined + duplicates + dropped, per source and reason."""

    stage: str
    balanced: bool
    totals: LedgerTotals = Field(default_factory=LedgerTotals)
    sources: dict[str, LedgerSource] = Field(default_factory=dict)


class IngestLedger(StageLedger):
    params_digest: Optional[str] = None


class AnonymizeLedger(StageLedger):
    key_fingerprint: Optional[str] = None


class QualityLedger(StageLedger):
    decisions: dict[str, int] = Field(default_factory=dict)
    input_sha256: Optional[str] = None


class SplitLedger(StageLedger):
    data_version: Optional[str] = None


class ReportLedger(StageLedger):
    pass


# ---------------------------------------------------------------------------------------------------------------
# metrics: shared parts


class Passport(_Open):
    """The leakage gate's verdict, carried from anonymize to every later stage (`upstream_gate`)."""

    passed: bool
    key_fingerprint: Optional[str] = None
    checked_records: Optional[int] = None
    canaries_checked: Optional[int] = None
    original_values_checked: Optional[int] = None
    gate_sha256: Optional[str] = None
    residual: dict[str, int] = Field(default_factory=dict)


class StageMetrics(_Open):
    """Base of every `metrics.json` model.

    HEADLINE: {name: dotted key} of the few figures shown first (Prefect artifact, headline.json, `dvc metrics
    show`). The names are a small vocabulary shared by the stages (records, quarantined, pr_auc, ...): DVC prints
    one column per distinct name over all stages, so `dvc metrics show` stays under 200 characters a line.
    VOLATILE: dotted keys of figures that differ between identical runs (timings); `write_metrics` moves them into
    `timings.json`, `read_metrics` puts them back. `list[].key` addresses a key in every item of a list of objects
    that have a `name`.
    """

    HEADLINE: ClassVar[dict[str, str]] = {}
    VOLATILE: ClassVar[tuple[str, ...]] = ()
    stage: Optional[str] = None

    def flat(self) -> dict[str, Any]:
        """Every scalar leaf as {dotted.key: value} (lists of named objects by name: `variants.fp32.pr_auc`)."""
        return flatten(self.model_dump(mode="json"))

    def headline(self) -> dict[str, Any]:
        """The contract's headline figures, in HEADLINE order (missing ones left out)."""
        return _headline(self.flat(), self.HEADLINE)


def _headline(flat: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    """Flat headline figures (floats rounded to 4 decimals, so `dvc metrics show` stays narrow)."""
    out = {}
    for name, k in keys.items():
        v = flat.get(k)
        if v is not None:
            out[name] = round(v, 4) if isinstance(v, float) else v
    return out


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Scalar leaves of a JSON document as {dotted.key: value}; a list of objects with a `name` is keyed by name,
    other lists are left out."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        if obj and all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in obj):
            for x in obj:
                out.update(flatten({k: v for k, v in x.items() if k != "name"}, f"{prefix}.{x['name']}"))
    elif prefix:
        out[prefix] = obj
    return out


# ---------------------------------------------------------------------------------------------------------------
# ingest


class IngestSourceMetrics(_Open):
    kind: Optional[str] = None
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    quarantine_rate: float = 0.0
    duplicate_rate: float = 0.0
    duplicates_by_kind: dict[str, int] = Field(default_factory=dict)
    quarantine_reasons: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, int] = Field(default_factory=dict)
    prevalence: Optional[float] = None
    dedup: Optional[str] = None
    notes: list[str] = Field(default_factory=list)


class IngestTotals(_Open):
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0


class IngestDuplicates(_Open):
    exact: int = 0
    near: int = 0
    label_conflicts: int = 0


class IngestMetrics(StageMetrics):
    HEADLINE = {"records": "totals.accepted", "quarantined": "totals.quarantined"}
    stage: Optional[str] = "ingest"
    balanced: bool
    totals: IngestTotals
    sources: dict[str, IngestSourceMetrics] = Field(default_factory=dict)
    duplicates: IngestDuplicates = Field(default_factory=IngestDuplicates)
    params: dict[str, Any] = Field(default_factory=dict)
    params_digest: Optional[str] = None
    evaluation: Optional[dict[str, Any]] = None


# ---------------------------------------------------------------------------------------------------------------
# anonymize


class TypeRisk(_Open):
    recall: Optional[float] = None
    ci_low: Optional[float] = None  # 95% Wilson lower bound
    n: int = 0
    target: Optional[float] = None  # anonymize.recall_targets
    meets_target: Optional[bool] = None  # ci_low >= target (None: no target for this type)
    gate_sees: Optional[bool] = None  # the leakage gate re-detects this type by pattern


class ResidualRisk(_Open):
    per_type: dict[str, TypeRisk] = Field(default_factory=dict)
    expected_leaks_per_10k_records: Optional[float] = None  # all types, at the measured recall
    expected_leaks_per_10k_records_at_ci_low: Optional[float] = None
    expected_leaks_per_10k_records_by_type: dict[str, float] = Field(default_factory=dict)
    below_target: list[str] = Field(default_factory=list)
    meets_targets: Optional[bool] = None
    gate_visible_types: list[str] = Field(default_factory=list)
    gate_invisible_types: list[str] = Field(default_factory=list)
    eval_set: dict[str, Any] = Field(default_factory=dict)
    this_run_ground_truth: Optional[dict[str, dict[str, Any]]] = None  # demo: per type values/surviving/recall


class Reidentification(_Open):
    min_k: Optional[int] = None
    share_below_k: Optional[float] = None
    k_target: Optional[int] = None
    unit: Optional[str] = None  # person (distinct group_id) or record
    quasi_identifiers: list[str] = Field(default_factory=list)
    records_below_k: Optional[int] = None
    driving_columns: list[str] = Field(default_factory=list)
    driving_columns_share_below_k: Optional[float] = None
    policy: dict[str, Any] = Field(default_factory=dict)  # offered generalisation/suppression (steps, applied)


class Entities(_Open):
    total: int = 0
    by_type: dict[str, int] = Field(default_factory=dict)
    by_source: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_field: dict[str, int] = Field(default_factory=dict)
    by_operator: dict[str, int] = Field(default_factory=dict)


class AnonymizeGate(_Open):
    passed: bool
    checked_records: Optional[int] = None
    checked_cells: Optional[int] = None
    records_with_residual: Optional[int] = None
    canaries_checked: Optional[int] = None
    original_values_checked: Optional[int] = None
    residual: dict[str, int] = Field(default_factory=dict)
    fail_on_residual: Optional[bool] = None
    key_fingerprint: Optional[str] = None


class AnonymizeMetrics(StageMetrics):
    HEADLINE = {"records": "records_out", "quarantined": "quarantined", "entities": "entities.total",
                "leaks_10k": "residual_risk.expected_leaks_per_10k_records"}
    VOLATILE = ("seconds", "detect_seconds", "records_per_s")
    stage: Optional[str] = "anonymize"
    records_in: int
    records_out: int
    quarantined: int
    partitions: Optional[int] = None
    executor: Optional[str] = None
    replace_executor: Optional[str] = None  # where replacement + gate ran: local-pool (forked workers) | driver
    workers: Optional[int] = None
    seconds: Optional[float] = None
    detect_seconds: Optional[float] = None
    records_per_s: Optional[float] = None
    distinct_texts: dict[str, int] = Field(default_factory=dict)
    entities: Entities = Field(default_factory=Entities)
    dictionary_values: Optional[int] = None
    dictionary_sweep_hits: Optional[int] = None
    dictionary_sweep_withheld: Optional[int] = None  # free-text values not swept (detector agreement too low)
    signals: dict[str, int] = Field(default_factory=dict)
    columns: dict[str, str] = Field(default_factory=dict)
    gate: AnonymizeGate
    key_fingerprint: Optional[str] = None
    params_digest: Optional[str] = None
    ground_truth: Optional[dict[str, Any]] = None
    residual_risk: Optional[ResidualRisk] = None  # helper "privacy" (issue 22/23): measured recall per entity type
    reidentification: Optional[Reidentification] = None


# ---------------------------------------------------------------------------------------------------------------
# quality


class LabelIssues(_Open):
    count: int
    rate: Optional[float] = None
    by_source: dict[str, int] = Field(default_factory=dict)
    method: Optional[str] = None
    model: Optional[str] = None
    folds: Optional[int] = None
    rounds: Optional[int] = None  # fits of the fold models (each = k_folds fits)
    withdrawn: Optional[int] = None  # flags withdrawn after cleanlab chose them (0: the stage withdraws none)


class LabelConflicts(_Open):
    count: int = 0
    from_ingest: int = 0
    same_text_different_label: int = 0


class Shortcut(_Open):
    auc: Optional[float] = None  # = auc_meta (the anonymization-features-only model)
    warn_threshold: Optional[float] = None
    warning: bool = False
    status: Optional[str] = None  # ok | info | warning | not_run
    auc_meta: Optional[float] = None  # out-of-fold AUC, anonymization features only
    auc_text: Optional[float] = None  # out-of-fold AUC of the label-issue text model
    driver: Optional[str] = None  # the placeholder type whose class rates differ most
    rate_gap: Optional[float] = None  # that placeholder's share in fraud minus in legit records
    message: Optional[str] = None


class QualityMetrics(StageMetrics):
    HEADLINE = {"records": "records", "label_issues": "label_issues.count"}
    stage: Optional[str] = "quality"
    records: int
    labelled: int = 0
    unlabelled: int = 0
    kept: int
    policy: Optional[str] = None
    label_issues: LabelIssues
    label_conflicts: LabelConflicts = Field(default_factory=LabelConflicts)
    outliers: int = 0
    near_duplicates: int = 0
    decisions: dict[str, int] = Field(default_factory=dict)
    shortcut: Shortcut = Field(default_factory=Shortcut)
    imbalance: dict[str, Any] = Field(default_factory=dict)  # before/after: {overall, by_source}
    upstream_gate: Optional[Passport] = None
    input_sha256: Optional[str] = None
    params_digest: Optional[str] = None
    ground_truth: Optional[dict[str, Any]] = None
    review_queue: Optional[int] = None


# ---------------------------------------------------------------------------------------------------------------
# split


class Rebalance(_Open):
    configured: Optional[str] = None
    method: Optional[str] = None
    minority_label: Optional[str] = None
    target_ratio: Optional[float] = None
    ratio_before: Optional[float] = None
    ratio_after: Optional[float] = None
    rows_before: Optional[int] = None
    rows_after: Optional[int] = None
    train_flagged: dict[str, Any] = Field(default_factory=dict)


class SplitMetrics(StageMetrics):
    HEADLINE = {"train": "sizes.train", "test": "sizes.test"}
    stage: Optional[str] = "split"
    sizes: dict[str, int]
    labelled_records: Optional[int] = None
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    prevalence: dict[str, Optional[float]] = Field(default_factory=dict)
    prevalence_relative_diff: dict[str, Optional[float]] = Field(default_factory=dict)
    source_prevalence: dict[str, Any] = Field(default_factory=dict)
    group_overlap: dict[str, dict[str, int]] = Field(default_factory=dict)
    group_overlap_total: int = 0
    train_ratio: Optional[float] = None
    rebalance: Rebalance = Field(default_factory=Rebalance)
    quality_flagged: dict[str, int] = Field(default_factory=dict)
    unique_records: dict[str, int] = Field(default_factory=dict)
    upstream_gate: Optional[Passport] = None
    input_sha256: Optional[str] = None
    params_digest: Optional[str] = None
    data_version: Optional[str] = None
    time_based: Optional[bool] = None
    leakage_groups: Optional[int] = None


# ---------------------------------------------------------------------------------------------------------------
# train


class EvalMetrics(_Open):
    pr_auc: Optional[float] = None
    roc_auc: Optional[float] = None
    f1: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    recall_at_1pct_fpr: Optional[float] = None
    threshold: Optional[float] = None
    n: Optional[int] = None
    n_fraud: Optional[int] = None


class TrainMetrics(StageMetrics):
    HEADLINE = {"pr_auc": "test_pr_auc"}
    # resumed_from_epoch: a fact of this process (a killed run resumed from its checkpoint), not of the model
    VOLATILE = ("training_time_s", "stage_time_s", "threads", "resumed_from_epoch")
    stage: Optional[str] = "train"
    validation: EvalMetrics
    test: EvalMetrics
    threshold: Optional[float] = None
    val_pr_auc: Optional[float] = None
    test_pr_auc: Optional[float] = None
    test_f1: Optional[float] = None
    test_recall_at_1pct_fpr: Optional[float] = None
    test_roc_auc: Optional[float] = None
    training_time_s: Optional[float] = None
    stage_time_s: Optional[float] = None
    epochs_run: Optional[int] = None
    best_epoch: Optional[int] = None
    stopped_early: Optional[bool] = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    trainable_params: Optional[int] = None
    total_params: Optional[int] = None
    loss_weighting: Optional[str] = None
    qlora: Optional[bool] = None
    n_train: Optional[int] = None
    counts: dict[str, Any] = Field(default_factory=dict)
    learning_rate: Optional[float] = None  # the rate trained with (train.learning_rate: auto = validation sweep)
    lr_sweep: Optional[list[dict[str, Any]]] = None
    threads: Optional[int] = None


# ---------------------------------------------------------------------------------------------------------------
# compress


class Variant(_Open):
    name: str
    kind: str
    size_mb: Optional[float] = None
    weights_mb: Optional[float] = None
    params: Optional[int] = None
    pr_auc: Optional[float] = None  # test
    val_pr_auc: Optional[float] = None  # validation: what the variant choice compares
    pr_auc_drop: Optional[float] = None
    roc_auc: Optional[float] = None
    f1: Optional[float] = None
    precision: Optional[float] = None
    recall: Optional[float] = None
    recall_at_1pct_fpr: Optional[float] = None
    threshold: Optional[float] = None
    size_ratio: Optional[float] = None
    latency_p50_ms: Optional[float] = None
    latency_p95_ms: Optional[float] = None
    speedup_b1: Optional[float] = None
    throughput_b32: Optional[float] = None
    build_s: Optional[float] = None


class ChosenRule(_Open):
    chosen: str
    pr_auc_budget: Optional[float] = None
    baseline_floor: Optional[bool] = None
    budget_only_choice: Optional[str] = None
    baseline_pr_auc: Optional[float] = None
    chosen_on: Optional[str] = None  # the variant field the choice compared (val_pr_auc: validation)
    floor_met: Optional[bool] = None  # None: no baseline floor applied
    eligible: Optional[list[str]] = None  # variants within the budget and not significantly below fp32
    significantly_below_fp32: Optional[list[str]] = None  # paired bootstrap on the chosen_on split


class CompressMetrics(StageMetrics):
    HEADLINE = {"pr_auc": "chosen_variant.pr_auc", "chosen": "chosen", "floor_met": "chosen_rule.floor_met"}
    VOLATILE = ("stage_time_s", "variants[].latency_p50_ms", "variants[].latency_p95_ms", "variants[].speedup_b1",
                "variants[].throughput_b32", "variants[].build_s", "variants[].cpu_s_per_1000", "threads")
    stage: Optional[str] = "compress"
    variants: list[Variant]
    chosen: str
    reference: Optional[str] = None
    baseline: Optional[str] = None
    pr_auc_budget: Optional[float] = None
    chosen_rule: ChosenRule
    threads: Optional[int] = None
    latency_runs: Optional[int] = None
    n_test: Optional[int] = None
    n_validation: Optional[int] = None
    onnx_max_abs_diff: Optional[float] = None
    upstream_gate: Optional[Passport] = None
    stage_time_s: Optional[float] = None
    # issue 21: validation-chosen variant, router, baseline comparison (paired bootstrap), true-label evaluation
    variants_by_name: dict[str, dict[str, Any]] = Field(default_factory=dict)
    router: Optional[dict[str, Any]] = None
    versus_baseline: Optional[dict[str, Any]] = None
    true_labels: Optional[dict[str, Any]] = None
    segments: Optional[dict[str, Any]] = None  # per source (the first form; kept)
    # per segmentation of compress.segments: {split, variant, threshold, overall_recall, dimensions: {source|channel|
    # region|amount_band|...: {segments: {value: {n, n_fraud, pr_auc, pr_auc_ci, recall, recall_ci,
    # recall_below_overall}}, warnings}}, skipped: {segmentation: reason}}
    segments_by: Optional[dict[str, Any]] = None
    warnings: list[str] = Field(default_factory=list)
    hf_loading_check: Optional[dict[str, Any]] = None

    def variant(self, name: Optional[str]) -> Optional[Variant]:
        return next((v for v in self.variants if v.name == name), None)

    def headline(self) -> dict[str, Any]:
        flat = self.flat()
        v = self.variant(self.chosen)
        flat["chosen_variant.pr_auc"] = v.pr_auc if v else None
        return _headline(flat, self.HEADLINE)


# ---------------------------------------------------------------------------------------------------------------
# report


class ReportMetrics(StageMetrics):
    HEADLINE = {"overall": "overall", "warnings": "warnings"}
    stage: Optional[str] = "report"
    overall: str
    checks_passed: int = 0
    checks_failed: int = 0
    warnings: int = 0
    sections: dict[str, str] = Field(default_factory=dict)
    artifacts_described: Optional[int] = None
    compared_with_previous: Optional[bool] = None
    restricted_not_read: Optional[int] = None
    signed: Optional[bool] = None
    pii_scan: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# provenance sidecar


class Provenance(_Open):
    """`provenance.json` beside a stage's outputs: what the data passed and where it came from. Written by every
    stage after anonymize (`write_provenance`), read by the next one (`read_provenance`) instead of copying the gate
    passport through metrics or guessing another stage's folder."""

    stage: str
    gate: Optional[Passport] = None
    data_version: Optional[str] = None
    params_digest: Optional[str] = None
    git: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, Optional[str]] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# the table of stages


@dataclass(frozen=True)
class Stage:
    name: str  # the dvc.yaml stage and CLI command
    folder: str  # the params.yaml `paths` key of its output folder
    metrics: Type[StageMetrics]
    ledger: Type[StageLedger]
    restricted: bool  # outputs may hold raw PII (restricted remote; the report reads only its counts)

    def folder_path(self, params: Any) -> str:
        return getattr(params.paths, self.folder) if hasattr(params, "paths") else params[self.folder]


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "ingested", IngestMetrics, IngestLedger, restricted=True),
    Stage("anonymize", "anonymized", AnonymizeMetrics, AnonymizeLedger, restricted=False),
    Stage("quality", "quality", QualityMetrics, QualityLedger, restricted=False),
    Stage("split", "splits", SplitMetrics, SplitLedger, restricted=False),
    Stage("train", "lora", TrainMetrics, StageLedger, restricted=False),
    Stage("compress", "compressed", CompressMetrics, StageLedger, restricted=False),
    Stage("report", "reports", ReportMetrics, ReportLedger, restricted=False),
)
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_BY_FOLDER: dict[str, Stage] = {s.folder: s for s in STAGES}
M = TypeVar("M", bound=BaseModel)


# ---------------------------------------------------------------------------------------------------------------
# writing and reading


def _split_volatile(doc: dict[str, Any], volatile: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stable document, volatile figures) for the dotted keys in `volatile`."""
    import copy

    stable = copy.deepcopy(doc)
    timings: dict[str, Any] = {}
    for key in volatile:
        if "[]." in key:
            lst, leaf = key.split("[].", 1)
            for item in stable.get(lst) or []:
                if isinstance(item, dict) and leaf in item:
                    timings.setdefault(lst, {}).setdefault(str(item.get("name")), {})[leaf] = item.pop(leaf)
            continue
        parts = key.split(".")
        node = stable
        for p in parts[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            val = node.pop(parts[-1])
            tgt = timings
            for p in parts[:-1]:
                tgt = tgt.setdefault(p, {})
            tgt[parts[-1]] = val
    return stable, timings


def _merge_volatile(doc: dict[str, Any], timings: dict[str, Any], volatile: tuple[str, ...]) -> dict[str, Any]:
    for key in volatile:
        if "[]." in key:
            lst, leaf = key.split("[].", 1)
            by_name = timings.get(lst) or {}
            for item in doc.get(lst) or []:
                if isinstance(item, dict) and leaf not in item:
                    val = (by_name.get(str(item.get("name"))) or {}).get(leaf)
                    if val is not None:
                        item[leaf] = val
            continue
        parts = key.split(".")
        src: Any = timings
        for p in parts:
            src = src.get(p) if isinstance(src, dict) else None
        if src is None:
            continue
        node = doc
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node.setdefault(parts[-1], src)
    return doc


def write_metrics(out: str | Path, model: StageMetrics) -> dict[str, Any]:
    """Write `metrics.json` (deterministic), `timings.json` (VOLATILE figures) and `headline.json` into `out`;
    returns the full document (timings included) for the caller."""
    from pipeline.io import to_jsonable, write_json

    out = Path(out)
    full = to_jsonable(model.model_dump(mode="json", exclude_unset=True))
    stable, timings = _split_volatile(full, type(model).VOLATILE)
    write_json(out / METRICS_FILE, stable)
    if timings:
        write_json(out / TIMINGS_FILE, timings)
    else:
        (out / TIMINGS_FILE).unlink(missing_ok=True)
    write_json(out / HEADLINE_FILE, model.headline())
    return full


def validate_metrics(model: Type[M], doc: Any, where: str | Path = METRICS_FILE) -> M:
    """`model.model_validate(doc)`, a contract violation as one ConfigError line naming the file and the key."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {loc}: {err['msg']} (contract {model.__name__})") from None


def read_metrics(folder: str | Path, model: Type[M], *, timings: bool = True) -> M:
    """A stage's metrics.json (+ its timings.json when present and `timings`) validated against `model`. The report
    reads without timings, so that a re-run on the same data gives a byte-identical report."""
    from pipeline.io import read_json

    folder = Path(folder)
    path = folder / METRICS_FILE
    doc = read_json(path)
    tpath = folder / TIMINGS_FILE
    if timings and tpath.is_file() and isinstance(doc, dict):
        doc = _merge_volatile(doc, read_json(tpath), getattr(model, "VOLATILE", ()))
    return validate_metrics(model, doc, path)


def read_ledger(folder: str | Path, model: Type[M] = StageLedger) -> M:  # type: ignore[assignment]
    from pipeline.io import read_json

    path = Path(folder)
    if path.is_dir():
        path = path / LEDGER_FILE
    return validate_metrics(model, read_json(path), path)


def write_ledger(out: str | Path, ledger_doc: dict[str, Any], model: Type[StageLedger] = StageLedger) -> None:
    from pipeline.io import write_json

    write_json(Path(out) / LEDGER_FILE, validate_metrics(model, ledger_doc, Path(out) / LEDGER_FILE)
               .model_dump(mode="json", exclude_unset=True))
