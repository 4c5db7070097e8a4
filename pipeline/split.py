"""`fraudslm split`: leakage-free train / validation / test splits and the `datasets.DatasetDict` hand-off.

Records that share a customer (`group_id`) or a near-duplicate cluster (`dup_cluster`) are one group (union-find),
and a group never straddles splits. Groups are assigned by an iterative stratification over (source, label) strata
so validation and test keep the natural prevalence, or by time (`split.time_based`: test = latest period). Only train
is rebalanced (undersample / oversample with imbalanced-learn, or class weights)."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import Params, SplitParams
from pipeline.errors import ConfigError, GateError
from pipeline.contracts import SplitMetrics, write_metrics
from pipeline.provenance import require_passed_gate, write_provenance
from pipeline.io import atomic_dir, atomic_path, read_parquet, sha256_file, write_parquet, write_text
from pipeline.ledger import Ledger
from pipeline.quality.groups import leakage_components

SPLITS = ("train", "validation", "test")
LABEL_NAMES = ["legit", "fraud"]
REQUIRED = ("record_id", "source", "text", "label")
OUTPUT_COLUMNS = ["record_id", "source", "group_id", "text", "label", "quality_flag"]


# ---------------------------------------------------------------------------------------------------------- inputs
def read_quality_inputs(inp: Path) -> tuple[pd.DataFrame, dict, str]:
    # the gate passport the quality stage recorded beside its outputs (pipeline.provenance; fail closed)
    upstream = require_passed_gate(inp, "split").model_dump(mode="json", exclude_none=True)
    path = inp / "records.parquet"
    if not path.exists():
        raise ConfigError(f"{path}: records file not found")
    try:
        df = read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{path}: unreadable Parquet ({type(exc).__name__})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    dup = df["record_id"].duplicated()
    if dup.any():
        raise ConfigError(f"{path}: record_id {df.loc[dup, 'record_id'].iloc[0]}: duplicated")
    lab = pd.to_numeric(df["label"], errors="coerce")
    bad = (lab.isna() & df["label"].notna()) | ~(lab.isna() | lab.isin([0, 1]))
    if bad.any():
        raise ConfigError(f"{path}: record_id {df.loc[bad, 'record_id'].iloc[0]}: label must be 0, 1 or null")
    df = df.copy()
    df["label"] = lab.astype("Int8")
    for col, default in (("group_id", None), ("dup_cluster", None), ("quality_flag", False)):
        if col not in df.columns:
            df[col] = default
    df["quality_flag"] = df["quality_flag"].fillna(False).astype(bool)
    df["text"] = df["text"].astype("string").fillna("")
    df["source"] = df["source"].astype(str)
    return df.sort_values("record_id", kind="mergesort").reset_index(drop=True), upstream, sha256_file(path)


# ------------------------------------------------------------------------------------------------------ assignment
def assign_stratified(df: pd.DataFrame, comps: np.ndarray, p: SplitParams, seed: int) -> np.ndarray:
    """Greedy iterative stratification of groups over (source, label) strata: groups, largest first (ties in seeded
    random order), go to the split with the largest relative deficit for the strata they contain."""
    fractions = np.array([1.0 - p.val_size - p.test_size, p.val_size, p.test_size])
    strata, _ = pd.factorize(df["source"].astype(str) + "|" + df["label"].astype(str), sort=True)
    n_comp = int(comps.max()) + 1
    n_str = int(strata.max()) + 1
    counts = np.zeros((n_comp, n_str), dtype=np.int64)
    np.add.at(counts, (comps, strata), 1)
    desired = fractions[:, None] * counts.sum(axis=0)[None, :]  # (3, n_str)
    current = np.zeros_like(desired)
    rng = np.random.default_rng(seed)
    sizes = counts.sum(axis=1)
    order = rng.permutation(n_comp)
    order = order[np.argsort(-sizes[order], kind="stable")]
    split_of_comp = np.empty(n_comp, dtype=np.int64)
    denom = np.maximum(desired, 1.0)
    rows_desired = desired.sum(axis=1)
    rows_current = np.zeros(3)
    for c in order:
        cnt = counts[c]
        nz = np.flatnonzero(cnt)
        score = ((desired[:, nz] - current[:, nz]) / denom[:, nz] * cnt[nz]).sum(axis=1)
        tie = (rows_desired - rows_current) / np.maximum(rows_desired, 1.0)
        s = int(np.lexsort((-tie, -score))[0])
        split_of_comp[c] = s
        current[s, nz] += cnt[nz]
        rows_current[s] += cnt[nz].sum()
    return split_of_comp[comps]


def assign_by_time(df: pd.DataFrame, comps: np.ndarray, p: SplitParams) -> np.ndarray:
    """Test = latest period, validation = the period before, train = the rest; a group goes by its latest event
    (records without a timestamp count as earliest)."""
    if "event_time" not in df.columns or df["event_time"].isna().all():
        raise ConfigError("split.time_based: records have no event_time")
    t = pd.to_datetime(df["event_time"], utc=True)
    ts = t.astype("int64").to_numpy(dtype=np.int64, copy=True)
    ts[t.isna().to_numpy()] = np.iinfo(np.int64).min
    n_comp = int(comps.max()) + 1
    latest = np.full(n_comp, np.iinfo(np.int64).min)
    np.maximum.at(latest, comps, ts)
    sizes = np.bincount(comps, minlength=n_comp)
    order = np.lexsort((np.arange(n_comp), latest))  # oldest first, ties by component number
    cum = np.cumsum(sizes[order]) / len(df)
    split_of_comp = np.zeros(n_comp, dtype=np.int64)
    train_end = 1.0 - p.test_size - p.val_size
    pos = np.empty(n_comp)
    pos[order] = cum - sizes[order] / len(df) / 2  # midpoint of each group's rows on the time axis
    split_of_comp[pos >= train_end] = 1
    split_of_comp[pos >= 1.0 - p.test_size] = 2
    return split_of_comp[comps]


# ------------------------------------------------------------------------------------------------------ rebalancing
def resolve_rebalance(p: SplitParams, ratio_before: float | None) -> str:
    """`auto`: undersample only a strongly imbalanced train (natural minority/majority ratio below
    `auto_undersample_below`), where keeping every row multiplies the epoch cost and the loss weights; otherwise keep
    every row (`none`) and let the trainer's class-weighted loss balance it. Measured on the SMS benchmark (ratio 0.13):
    undersampling to 0.25 threw away ~1,080 ham messages and cost the LoRA model PR-AUC (README)."""
    if p.rebalance != "auto":
        return p.rebalance
    if ratio_before is None or ratio_before < p.auto_undersample_below:
        return "undersample"
    return "none"


def rebalance_train(train: pd.DataFrame, p: SplitParams, seed: int) -> tuple[pd.DataFrame, dict]:
    y = train["label"].astype(int).to_numpy()
    counts = np.bincount(y, minlength=2)
    minority = int(np.argmin(counts)) if counts[0] != counts[1] else 1
    majority = 1 - minority
    before = counts[minority] / counts[majority] if counts[majority] else None
    method = resolve_rebalance(p, before)
    info: dict = {"method": method, "target_ratio": p.target_ratio, "minority_label": LABEL_NAMES[minority],
                  "ratio_before": before}
    if p.rebalance == "auto":
        info["configured"] = "auto"
        info["auto_undersample_below"] = p.auto_undersample_below
    out = train.copy()
    if method == "none" or before is None or counts[minority] == 0:
        info["ratio_after"] = before
        return out, info
    if before >= p.target_ratio:
        info["ratio_after"] = before
        info["note"] = "train already at or above the target ratio; unchanged"
        if method == "class_weight":
            out["weight"] = 1.0
            info["weights"] = {LABEL_NAMES[0]: 1.0, LABEL_NAMES[1]: 1.0}
        return out, info
    idx = np.arange(len(out)).reshape(-1, 1)
    if method == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        sampler = RandomUnderSampler(sampling_strategy=p.target_ratio, random_state=seed)
        keep, _ = sampler.fit_resample(idx, y)
        out = out.iloc[np.sort(keep.ravel())]
    elif method == "oversample":
        from imblearn.over_sampling import RandomOverSampler

        sampler = RandomOverSampler(sampling_strategy=p.target_ratio, random_state=seed)
        take, _ = sampler.fit_resample(idx, y)
        out = out.iloc[np.sort(take.ravel())]
    else:  # class_weight: weighted minority / majority = target_ratio
        w_min = p.target_ratio * counts[majority] / counts[minority]
        weights = {minority: float(w_min), majority: 1.0}
        out["weight"] = np.where(y == minority, weights[minority], 1.0)
        info["weights"] = {LABEL_NAMES[k]: v for k, v in sorted(weights.items())}
    yy = out["label"].astype(int).to_numpy()
    c2 = np.bincount(yy, minlength=2)
    if method == "class_weight":
        w = out["weight"].to_numpy()
        info["ratio_after"] = float(w[yy == minority].sum() / w[yy == majority].sum())
    else:
        info["ratio_after"] = c2[minority] / c2[majority] if c2[majority] else None
    info["rows_before"] = int(len(train))
    info["rows_after"] = int(len(out))
    return out.reset_index(drop=True), info


# ------------------------------------------------------------------------------------------------------------ stage
def run_split(inp: Path, out: Path, params: Params) -> dict:
    inp, out = Path(inp), Path(out)
    p = params.split
    seed = params.seed
    if p.val_size + p.test_size >= 0.9:
        raise ConfigError("split: val_size + test_size must leave at least 10% for train")
    df, upstream_gate, input_sha = read_quality_inputs(inp)

    ledger = Ledger("split")
    for src, c in df["source"].value_counts().sort_index().items():
        ledger.read(str(src), int(c))
    unl = df["label"].isna()
    for src, c in df.loc[unl, "source"].value_counts().sort_index().items():
        ledger.drop(str(src), "unlabelled", int(c))
    data = df[~unl].reset_index(drop=True)
    if data.empty or data["label"].nunique() < 2:
        raise GateError(f"{inp / 'records.parquet'}: need labelled records of both classes to split")

    comps = leakage_components(data)
    assigned = assign_by_time(data, comps, p) if p.time_based else assign_stratified(data, comps, p, seed)
    parts = {name: data[assigned == i].reset_index(drop=True) for i, name in enumerate(SPLITS)}

    overall = data["label"].astype(int).to_numpy()
    minority = int(np.argmin(np.bincount(overall, minlength=2)))
    for name in ("validation", "test"):
        _check_minority(parts[name], name, minority, p, len(data))
    flagged_out = pd.DataFrame(columns=data.columns)
    if p.train_flagged == "drop":
        # label issues the quality stage flagged leave the training split only: validation and test keep every
        # record with its given label, so evaluation stays on the natural (noisy) data
        qf = parts["train"]["quality_flag"].to_numpy(bool)
        flagged_out = parts["train"][qf]
        parts["train"] = parts["train"][~qf].reset_index(drop=True)
    train, rebalance = rebalance_train(parts["train"], p, seed)
    rebalance["train_flagged"] = {"policy": p.train_flagged, "dropped": int(len(flagged_out))}
    _check_minority(train, "train", minority, p, len(data))
    parts["train"] = train

    overlap = group_overlap(parts, data, comps, assigned)
    if any(v for pair in overlap.values() for v in pair.values()):
        raise GateError(f"split: groups straddle splits {overlap}; refusing to write leaking splits")

    # ledger: accepted = unique input records present in some split; undersampling drops are recorded
    present = set().union(*(set(f["record_id"]) for f in parts.values()))
    for src, c in flagged_out["source"].value_counts().sort_index().items():
        ledger.drop(str(src), "quality_flagged_train", int(c))
    gone = data[~data["record_id"].isin(present) & ~data["record_id"].isin(set(flagged_out["record_id"]))]
    for src, c in gone["source"].value_counts().sort_index().items():
        ledger.drop(str(src), "undersampled", int(c))
    kept = data[data["record_id"].isin(present)]
    for src, c in kept["source"].value_counts().sort_index().items():
        ledger.accept(str(src), int(c))
    if not ledger.balanced:
        raise GateError(f"split: ledger does not balance for {', '.join(ledger.unbalanced())}")

    params_digest = params.digest()
    data_version = hashlib.sha256(f"{input_sha}:{params_digest}".encode()).hexdigest()[:16]
    columns = OUTPUT_COLUMNS + (["weight"] if p.rebalance == "class_weight" else [])
    # per-segment evaluation columns (issue 21): in the parquet files only, never in the DatasetDict the model reads
    columns += [c for c in p.segment_columns if c in data.columns and c not in columns]
    frames = {}
    for name in SPLITS:
        f = parts[name]
        if "weight" in columns and "weight" not in f.columns:
            f = f.assign(weight=1.0)
        f = f[columns].copy()
        f["label"] = f["label"].astype("int8")
        f["weight"] = f["weight"].astype("float64") if "weight" in f else None
        f = f.drop(columns=[c for c in f.columns if c not in columns])
        frames[name] = f.sort_values("record_id", kind="mergesort").reset_index(drop=True)

    metrics = split_metrics(frames, parts, data, rebalance, overlap, p)
    metrics.update(
        {
            "stage": "split",
            "upstream_gate": upstream_gate,
            "input_sha256": input_sha,
            "params_digest": params_digest,
            "data_version": data_version,
            "time_based": p.time_based,
            "leakage_groups": int(comps.max()) + 1,
        }
    )

    out.mkdir(parents=True, exist_ok=True)
    for name, f in frames.items():
        write_parquet(out / f"{name}.parquet", f)
    save_dataset_dict(frames, out / "dataset")
    write_text(out / "README.md", dataset_card(metrics, params))
    _plot(metrics, out / "plots" / "split_balance.png")
    write_metrics(out, SplitMetrics.model_validate(metrics))
    write_provenance(out, "split", gate=upstream_gate, data_version=data_version, params_digest=params_digest)
    ledger.extra["data_version"] = data_version
    ledger.write(out)
    return metrics


def _check_minority(frame: pd.DataFrame, name: str, minority: int, p: SplitParams, n_total: int) -> None:
    have = int((frame["label"].astype(int) == minority).sum())
    if have < p.min_minority_per_split:
        raise GateError(
            f"split: {name} has {have} {LABEL_NAMES[minority]} example(s), fewer than "
            f"split.min_minority_per_split={p.min_minority_per_split} ({n_total} labelled records in total); "
            f"add data, enlarge val_size/test_size or lower min_minority_per_split"
            + (", or keep quality-flagged records in train (split.train_flagged=keep)"
               if name == "train" and p.train_flagged == "drop" else "")
        )


def group_overlap(parts: dict, data: pd.DataFrame, comps: np.ndarray, assigned: np.ndarray) -> dict:
    comp_sets = {name: set(comps[assigned == i].tolist()) for i, name in enumerate(SPLITS)}
    res = {}
    for a, b in itertools.combinations(SPLITS, 2):
        pa, pb = parts[a], parts[b]
        res[f"{a}|{b}"] = {
            "group_id": len(set(pa["group_id"].dropna()) & set(pb["group_id"].dropna())),
            "dup_cluster": len(set(pa["dup_cluster"].dropna()) & set(pb["dup_cluster"].dropna())),
            "record_id": len(set(pa["record_id"]) & set(pb["record_id"])),
            "component": len(comp_sets[a] & comp_sets[b]),
        }
    return res


def _prev(frame: pd.DataFrame) -> float | None:
    return float(frame["label"].astype(int).mean()) if len(frame) else None


def split_metrics(frames: dict, parts: dict, data: pd.DataFrame, rebalance: dict, overlap: dict, p: SplitParams) -> dict:
    overall = _prev(data)
    sizes = {n: int(len(f)) for n, f in frames.items()}
    prevalence = {n: _prev(f) for n, f in frames.items()}
    rel = {n: (abs(v - overall) / overall if overall and v is not None else None) for n, v in prevalence.items()}
    by_source = {}
    for src in sorted(data["source"].unique()):
        by_source[src] = {"all": _prev(data[data["source"] == src])}
        for n, f in frames.items():
            s = f[f["source"] == src]
            by_source[src][n] = {"n": int(len(s)), "prevalence": _prev(s)}
    counts = {n: {LABEL_NAMES[k]: int((f["label"] == k).sum()) for k in (0, 1)} for n, f in frames.items()}
    m = {
        "sizes": sizes,
        "labelled_records": int(len(data)),
        "counts": counts,
        "prevalence": {"overall": overall, **prevalence},
        "prevalence_relative_diff": rel,
        "source_prevalence": by_source,
        "group_overlap": overlap,
        "group_overlap_total": int(sum(v for pair in overlap.values() for v in pair.values())),
        "train_ratio": rebalance.get("ratio_after"),
        "rebalance": rebalance,
        "quality_flagged": {n: int(f["quality_flag"].sum()) for n, f in frames.items()},
        "unique_records": {n: int(f["record_id"].nunique()) for n, f in frames.items()},
    }
    if p.time_based:
        m["time_range"] = {
            n: [str(pd.to_datetime(f["event_time"], utc=True).min()), str(pd.to_datetime(f["event_time"], utc=True).max())]
            for n, f in parts.items() if "event_time" in f and len(f)
        }
    return m


def save_dataset_dict(frames: dict, path: Path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, disable_progress_bars

    disable_progress_bars()

    spec = {
        "record_id": Value("string"),
        "source": Value("string"),
        "group_id": Value("string"),
        "text": Value("string"),
        "label": ClassLabel(names=LABEL_NAMES),
        "quality_flag": Value("bool"),
    }
    dd = {}
    for name, f in frames.items():
        feats = dict(spec)
        if "weight" in f.columns:
            feats["weight"] = Value("float64")
        g = f.copy()
        g["group_id"] = g["group_id"].astype(object).where(g["group_id"].notna(), None)
        g["text"] = g["text"].astype(str)
        g["label"] = g["label"].astype("int64")
        dd[name] = Dataset.from_pandas(g[list(feats)], features=Features(feats), preserve_index=False)
    with atomic_dir(path) as tmp:
        DatasetDict(dd).save_to_disk(str(tmp))


def dataset_card(m: dict, params: Params) -> str:
    p = params.split
    lines = [
        "---",
        "task_categories: [text-classification]",
        "language: [en]",
        "pretty_name: fraudslm anonymized fraud dataset",
        "---",
        "",
        "# fraudslm dataset",
        "",
        "Anonymized records (PII replaced by keyed pseudonyms or redacted) for fraud classification.",
        f"Labels: `label` ClassLabel {LABEL_NAMES} (0 = legit, 1 = fraud).",
        "",
        "## Version",
        "",
        f"- data version: `{m['data_version']}` (sha256 of input records + params digest)",
        f"- input records sha256: `{m['input_sha256']}`",
        f"- params digest: `{m['params_digest']}`",
        "",
        "## Anonymization gate (upstream)",
        "",
    ]
    for k, v in sorted(m["upstream_gate"].items()):
        lines.append(f"- {k}: `{v}`")
    lines += ["", "## Splits", "", "| split | records | legit | fraud | prevalence | flagged by quality |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for n in SPLITS:
        c = m["counts"][n]
        prev = m["prevalence"][n]
        lines.append(f"| {n} | {m['sizes'][n]} | {c['legit']} | {c['fraud']} | "
                     f"{prev:.4f} | {m['quality_flagged'][n]} |" if prev is not None else f"| {n} | 0 | 0 | 0 | - | 0 |")
    lines += [
        "",
        f"Overall prevalence before splitting: {m['prevalence']['overall']:.4f}. Validation and test keep the natural "
        "prevalence; only train is rebalanced.",
        "",
        "## Grouping",
        "",
        f"Records sharing a customer (`group_id`) or a near-duplicate cluster (`dup_cluster`) form one group "
        f"({m['leakage_groups']} groups); no group straddles splits (overlap total: {m['group_overlap_total']}).",
        "Split assignment: " + ("by time (test = latest period)." if p.time_based
                                else "stratified by (source, label) at group level."),
        "",
        "## Rebalancing (train only)",
        "",
        f"- method: `{m['rebalance']['method']}`, target minority/majority ratio {p.target_ratio}",
        f"- ratio before: {_fmt(m['rebalance'].get('ratio_before'))}, after: {_fmt(m['rebalance'].get('ratio_after'))}",
        f"- quality-flagged records left out of train (`split.train_flagged: {p.train_flagged}`): "
        f"{m['rebalance'].get('train_flagged', {}).get('dropped', 0)}",
    ]
    if m["rebalance"].get("configured") == "auto":
        lines.append(f"- `auto`: undersample below a natural ratio of {p.auto_undersample_below}, otherwise keep every "
                     "row (the trainer's class-weighted loss balances the classes)")
    if "weights" in m["rebalance"]:
        lines.append(f"- class weights (column `weight`): {m['rebalance']['weights']}")
    lines += ["", "## Sources", "", "| source | prevalence | train | validation | test |", "| --- | ---: | ---: | ---: | ---: |"]
    for src, d in m["source_prevalence"].items():
        lines.append(f"| {src} | {_fmt(d['all'])} | " + " | ".join(f"{d[n]['n']}" for n in SPLITS) + " |")
    lines += ["", "Records kept but flagged by the quality stage carry `quality_flag = true`.", ""]
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _plot(m: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    x = np.arange(len(SPLITS))
    axes[0].bar(x, [m["counts"][n]["legit"] for n in SPLITS], label="legit")
    axes[0].bar(x, [m["counts"][n]["fraud"] for n in SPLITS], bottom=[m["counts"][n]["legit"] for n in SPLITS],
                label="fraud")
    axes[0].set_title("records per split")
    axes[0].legend(fontsize=8)
    axes[1].bar(x, [m["prevalence"][n] or 0 for n in SPLITS])
    axes[1].axhline(m["prevalence"]["overall"], color="k", ls="--", lw=1, label="overall")
    axes[1].set_title("fraud prevalence")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x, SPLITS)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
