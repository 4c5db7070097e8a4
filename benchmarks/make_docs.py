"""Generate docs/benchmarks.md from benchmarks/results/*.json, so no measured figure is copied by hand.

    python -m benchmarks.make_docs            # write docs/benchmarks.md and README.md's headline table
    python -m benchmarks.make_docs --check    # exit 1 when either differs from what it would write

Every table is rendered from the results file its benchmark script writes (the command is named above the
table). `results/notebook.json` holds the hand-recorded lab notebook (configurations tried, ideas rejected, dated
default changes): figures no script records, shown as recorded. A results file this script does not know is still
rendered, as a flat table of its figures. Output is deterministic (sorted keys, fixed rounding, no dates).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "benchmarks.md"


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, list) and len(x) == 2 and all(isinstance(v, (int, float)) for v in x):
        return f"[{_f(x[0], nd)}, {_f(x[1], nd)}]"
    return str(x).replace("|", "\\|")


def _pr(d: dict | None, nd: int = 3) -> str:
    if not d:
        return "—"
    return f"{_f(d.get('precision'), nd)} / {_f(d.get('recall'), nd)}"


def _table(head: list[str], rows: Iterable[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    out += ["| " + " | ".join(c if isinstance(c, str) else _f(c) for c in r) + " |" for r in rows]
    return out + [""]


def _g(d: Any, *keys: Any, default: Any = None) -> Any:
    for k in keys:
        if isinstance(d, dict) and k in d:
            d = d[k]
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return default
    return d


def _source(name: str, command: str) -> list[str]:
    return [f"Source: `benchmarks/results/{name}`; reproduce: `{command}`.", ""]


# ------------------------------------------------------------------------------------------------ sections


def demo(d: dict) -> list[str]:
    out = ["## Demo data generator", ""] + _source("demo.json", "python -m benchmarks.bench_demo")
    rows = []
    for key in ("baseline", "target", "large"):
        r = d.get(key)
        if isinstance(r, dict):
            rows.append([key, r.get("records"), _f(r.get("seconds"), 1), _f(r.get("cpu_seconds"), 1),
                         _f(r.get("records_per_s"), 0), _f(r.get("peak_rss_mb"), 0),
                         _f(r.get("target_seconds")) if "target_seconds" in r else "—"])
    out += _table(["run", "records", "wall s", "CPU s", "records/s", "peak RSS MB", "target s"], rows)
    out += [f"Same seed, byte-identical output: {_f(d.get('deterministic_same_seed'))}. "
            f"Near-duplicate audit: MinHash recall {_f(_g(d, 'near_duplicate_audit', 'minhash_recall'))} over "
            f"{_f(_g(d, 'near_duplicate_audit', 'documented_pairs'))} documented pairs.", ""]
    return out


def ingest(d: dict) -> list[str]:
    out = ["## Ingest", ""] + _source("ingest.json", "python -m benchmarks.bench_ingest")
    out += [f"Input: `{d.get('source', '?')}` (×1 and the same rows ×4), chunk_rows {_f(d.get('chunk_rows'))}.", ""]
    rows = []
    for key, r in sorted((d.get("runs") or {}).items()):
        i, p = r.get("ingest", {}), r.get("pandas_read_csv", {})
        rows.append([key, i.get("rows"), _f(i.get("seconds"), 1), _f(i.get("rows_per_cpu_s"), 0),
                     _f(i.get("peak_rss_mb"), 0), _f(p.get("peak_rss_mb"), 0), r.get("ingest_over_pandas_rows_per_s")])
    out += _table(["run", "rows", "wall s", "rows per CPU s", "peak RSS MB", "pandas.read_csv peak RSS MB",
                   "speed vs pandas.read_csv"], rows)
    s = d.get("summary") or {}
    out += [f"×4 over ×1: ingest peak RSS ×{_f(s.get('ingest_peak_rss_ratio'))}, pandas.read_csv peak RSS "
            f"×{_f(s.get('pandas_peak_rss_ratio'))}.", ""]
    return out


def pii_quality(d: dict) -> list[str]:
    out = ["## PII detection quality", ""] + _source(
        "bench_pii_quality.json", "python -m benchmarks.bench_pii_quality --n 3000")
    demo_ = d.get("demo") or {}
    out += [f"Demo, {_f(demo_.get('gold_spans'))} planted spans in {_f(demo_.get('texts'))} texts: character "
            f"precision {_f(demo_.get('char_precision'))} ({_f(demo_.get('char_precision_labelled_types'))} over "
            "the types the demo truth labels).", ""]
    prec = demo_.get("char_precision_by_type") or {}
    rows = [[t, v.get("n"), v.get("recall_any"), v.get("recall_typed"), prec.get(t)]
            for t, v in sorted((demo_.get("per_type") or {}).items())]
    out += _table(["type", "spans", "recall (any type)", "recall (right type)", "char precision"], rows)
    dev = d.get("dev_json") or {}
    rows = []
    for name, r in sorted(dev.items()):
        if isinstance(r, dict) and "span_iou_0.5" in r:
            rows.append([name] + [f"{_f(_g(r, k, 'precision'))} / {_f(_g(r, k, 'recall'))} / {_f(_g(r, k, 'f2'))}"
                                  for k in ("span_iou_0.5", "span_iou_0.9", "token_io")])
    if rows:
        out += [f"`pii_benchmark/dev.json` ({_f(dev.get('records'))} records), type-agnostic P / R / F2:", ""]
        out += _table(["detector", "span IoU 0.5", "span IoU 0.9", "token level"], rows)
    pub = dev.get("published") or {}
    if pub:
        out += ["Published figures for the same set (their own scoring), P / R / F2: " + "; ".join(
            f"{name} {_f(r.get('precision'))} / {_f(r.get('recall'))} / {_f(r.get('f2'))}"
            for name, r in sorted(pub.items())) + ".", ""]
    i20 = d.get("issue20") or {}
    if i20:
        out += ["Learned PII NER (issue 20): before (stock spaCy NER) / after (learned NER) / vanilla Presidio, "
                f"{i20.get('metric', '')}. Targets: {_f(i20.get('targets'))}.", ""]
        for sname in ("heldout_generated", "shipped_eval_set", "dev_json"):
            block = i20.get(sname)
            if not isinstance(block, dict):
                continue
            names = [c for c in ("before", "after", "vanilla_presidio") if c in block]
            types = sorted({t for c in names for t in (block[c].get("recall_by_type") or {})})
            rows = [[t, _g(block, names[0], "recall_by_type", t, "n")]
                    + [_g(block, c, "recall_by_type", t, "recall") for c in names] for t in types]
            rows.append(["character precision", ""] + [_g(block, c, "char_precision") for c in names])
            out += [f"`{sname}` ({_f(block.get('texts'))} texts):", ""]
            out += _table(["gold type", "n"] + names, rows)
    loc = d.get("unseen_locales") or {}
    if loc.get("groups"):
        out += [f"Names and addresses from Faker locales the PII generator never draws from (the generator's templates, "
                f"seed {_f(loc.get('seed'))}, {_f(loc.get('texts_per_group'))} texts per group; the stage's detector; "
                "same metric), beside two groups of trained locales:", ""]
        rows = [[k, _g(g, "PERSON", "n"), _g(g, "PERSON", "recall"), _g(g, "STREET_ADDRESS", "n"),
                 _g(g, "STREET_ADDRESS", "recall"), g.get("char_precision")] for k, g in loc["groups"].items()]
        pooled = loc.get("unseen_pooled") or {}
        rows.append(["unseen, pooled", _g(pooled, "PERSON", "n"), _g(pooled, "PERSON", "recall"),
                     _g(pooled, "STREET_ADDRESS", "n"), _g(pooled, "STREET_ADDRESS", "recall"), ""])
        out += _table(["locales", "PERSON n", "PERSON recall", "STREET_ADDRESS n", "STREET_ADDRESS recall",
                       "char precision"], rows)
    sms = d.get("sms_tag_rates") or {}
    if sms:
        out += [f"Over-tagging on real informal text (no gold spans): share of {_f(sms.get('texts'))} texts of "
                f"{sms.get('source', '?')} in which a detector finds each type.", ""]
        out += _table(["detector", "PERSON", "STREET_ADDRESS", "LOCATION"],
                      [[k, _g(sms, k, "PERSON"), _g(sms, k, "STREET_ADDRESS"), _g(sms, k, "LOCATION")]
                       for k in ("before_stock_ner", "after") if k in sms])
    return out


def _pii_speed_cmd(d: dict) -> str:
    rep = d.get("repeat")
    return "python -m benchmarks.bench_pii_speed --n 3000" + (f" --repeat {rep}" if rep and rep != 3 else "")


def pii_speed(d: dict) -> list[str]:
    out = ["## PII detection speed", ""] + _source("bench_pii_speed.json", _pii_speed_cmd(d))
    rows = [[k, d.get(k)] for k in sorted(d) if isinstance(d.get(k), (int, float)) and not isinstance(d.get(k), bool)]
    out += _table(["figure", "value"], rows)
    t = d.get("targets") or {}
    out += ["Targets: " + ", ".join(f"`{k}` {'met' if v else 'missed'}" for k, v in sorted(t.items())) + ".", ""]
    if d.get("round_speedups_vs_naive"):
        out += [f"Speed-up vs naive in each of the {d.get('repeat')} interleaved rounds: "
                + ", ".join(f"{x:.2f}×" for x in d["round_speedups_vs_naive"]) + " (the figures above are medians).", ""]
    return out


def anonymize(d: dict) -> list[str]:
    out = ["## Anonymize stage against a naive loop", ""] + _source("anonymize.json", d.get("command", "?"))
    rows = [[k, v.get("records"), v.get("entities"), v.get("seconds"), v.get("records_per_s"),
             v.get("warm_records_per_s")] for k, v in sorted((d.get("variants") or {}).items())]
    out += _table(["variant", "records", "entities", "cold s", "records/s (cold)", "records/s (warm)"], rows)
    tg = d.get("targets") or {}
    out += _table(["ratio", "measured", "target"],
                  [[k, v, tg.get(k)] for k, v in sorted((d.get("ratios") or {}).items())])
    out += [f"Meets its targets: {_f(d.get('meets_targets'))}. {d.get('note', '')}".strip(), ""]
    if d.get("round_stage_vs_naive"):
        out += ["Stage vs naive (cold) in each round: " + ", ".join(f"{x:.2f}×" for x in d["round_stage_vs_naive"])
                + ".", ""]
    return out


def quality(d: dict) -> list[str]:
    out = ["## Label-issue detection (quality stage)", ""] + _source("quality.json", d.get("command", "?"))
    dm = d.get("demo") or {}
    sms = d.get("sms_spam") or {}
    rows = [[f"demo (n={_f(dm.get('n_generated'))}, {_f(dm.get('flip_rate'), 2)} flips)", _pr(dm.get("ours")),
             _pr(dm.get("standard"))]]
    m5 = sms.get("mean_at_5pct") or {}
    rows.append([f"SMS spam, 5% flips, mean of {len(sms.get('seeds_at_5pct') or [])} flip seeds",
                 _pr(m5.get("ours")), _pr(m5.get("standard"))])
    m3 = sms.get("mean_at_5pct_seeds_42_7_1234") or {}
    rows.append(["SMS spam, 5% flips, seeds 42/7/1234", _pr(m3.get("ours")), _pr(m3.get("standard"))])
    sp = d.get("speed") or {}
    rows.append([f"{_f(sp.get('records'))} demo-like records, 5% flips", _pr(sp.get("ours")),
                 _pr(sp.get("standard"))])
    out += _table(["data", "ours P / R", "standard recipe P / R"], rows)
    curve = sms.get("curve") or []
    reps = [r for r in curve if r.get("flip_rate") == 0.05] + list(sms.get("repeats_at_5pct") or [])
    out += [f"SMS runs at or above the standard recipe on both measures: "
            f"{_f(sms.get('runs_at_5pct_both_at_least_standard'))} of {len(sms.get('seeds_at_5pct') or reps)}.", ""]
    if reps:
        out += ["SMS spam, 5% flips, per flip seed:", ""]
        out += _table(["seed", "ours P / R", "standard P / R", "ours s", "standard s"],
                      [[str(r.get("seed")), _pr(r.get("ours")), _pr(r.get("standard")),
                        _f(_g(r, "ours", "seconds"), 1), _f(_g(r, "standard", "seconds"), 1)] for r in reps])
    if curve:
        out += ["SMS spam, flip-rate curve:", ""]
        out += _table(["flip rate", "seed", "ours P / R", "standard P / R"],
                      [[_f(r.get("flip_rate"), 2), str(r.get("seed")), _pr(r.get("ours")), _pr(r.get("standard"))]
                       for r in curve])
    card = d.get("card_transactions") or {}
    if card:
        out += [f"`card_transactions` ({_f(card.get('records'))} rows, prevalence {_f(card.get('prevalence'), 4)}; "
                f"{card.get('note', '')}): flag rate ours {_f(_g(card, 'ours', 'flag_rate'), 4)}, standard "
                f"{_f(_g(card, 'standard', 'flag_rate'), 4)}.", ""]
    sm = d.get("smishing") or {}
    if sm:
        out += [f"`smishing`: {_f(sm.get('conflicting_texts_surfaced'))} of {_f(sm.get('conflicting_texts_expected'))}"
                f" texts with conflicting labels surfaced ({_f(sm.get('conflicting_rows_surfaced'))} rows).", ""]
    if sp:
        out += [f"Speed: {_f(sp.get('records'))} records in {_f(sp.get('seconds'), 1)} s (target "
                f"{_f(sp.get('target_seconds'))} s, met: {_f(sp.get('meets_target'))}); the standard recipe alone "
                f"{_f(sp.get('standard_recipe_seconds'), 1)} s. Rounds:", ""]
        out += _table(["round", "step", "flagged", "changed"],
                      [[str(r.get("round")), r.get("view", "confident learning"), r.get("flagged"), r.get("changed")]
                       for r in sp.get("rounds") or []])
    return out


def label_noise(d: dict) -> list[str]:
    out = ["## Label-issue detection across data sets and noise models (quality stage)", ""]
    out += _source("label_noise.json", str(d.get("command", "python -m benchmarks.bench_label_noise")))
    for key, label in (("selection_rule", "Selection rule"), ("standard_recipe", "Standard recipe"),
                       ("stage_path", "Stage path")):
        if d.get(key):
            out += [f"{label}: {d[key]}", ""]
    summ = d.get("summary") or {}

    def cell(c: dict, det: str) -> str:
        return " / ".join(_f(_g(c, f"{det}_{m}", "mean")) for m in ("precision", "recall", "f1"))

    rows = []
    for data, by_noise in sorted((summ.get("table") or {}).items()):
        for noise, by_rate in sorted(by_noise.items()):
            for rate, c in sorted(by_rate.items(), key=lambda kv: float(kv[0])):
                rows.append([data, noise, rate, f"{len(c.get('seeds') or [])}", cell(c, "stage"), cell(c, "standard"),
                             _f(c.get("stage_f1_minus_standard"))])
    if rows:
        out += ["Mean over seeds, precision / recall / F1:", ""]
        out += _table(["data", "noise", "rate", "seeds", "stage P / R / F1", "standard P / R / F1",
                       "F1 difference"], rows)
    worst = summ.get("worst_case_vs_standard") or {}
    if summ:
        out += [f"At 5%: stage F1 at least the standard recipe's for every data set and noise model: "
                f"{_f(summ.get('all_f1_at_least_standard'))}; precision and recall at least 0.85 wherever required: "
                f"{_f(summ.get('all_pr_at_least_0.85'))}. Worst case: {worst.get('data', '?')} / "
                f"{worst.get('noise', '?')}, stage F1 {_f(worst.get('stage_f1'))} vs {_f(worst.get('standard_f1'))}.",
                ""]
    sp = d.get("speed") or {}
    if sp:
        out += [f"Speed: {_f(sp.get('records'))} records ({sp.get('data', '')}): stage {_f(sp.get('stage_seconds'), 1)}"
                f" s, standard recipe {_f(sp.get('standard_recipe_seconds'), 1)} s (ratio "
                f"{_f(sp.get('ratio_stage_over_standard'), 2)}, target ≤ {_f(sp.get('target_ratio'), 1)}, met: "
                f"{_f(sp.get('meets_target'))}); stage P / R {_pr(sp.get('stage'))}, standard {_pr(sp.get('standard'))}.",
                ""]
    for name, ab in sorted((d.get("ablations") or {}).items(), key=lambda kv: str(kv[1].get("date", ""))):
        table = ab.get("table_at_5pct") or {}
        dets = list(ab.get("variants") or {})
        if not table or not dets:
            continue
        out += [f"### Ablation `{name}` ({ab.get('date', '?')})", "", str(ab.get("question", "")), ""]
        out += [f"- `{k}`: {v}" for k, v in (ab.get("variants") or {}).items()]
        cmd = str(ab.get("command", "?"))
        out += ["", f"Command: {cmd if '`' in cmd else f'`{cmd}`'}. Noise: {ab.get('noise', '?')}.", "",
                "Mean F1 over seeds at 5% (difference to the standard recipe):", ""]
        rows = []
        for data, by_noise in sorted(table.items()):
            for noise, c in sorted(by_noise.items()):
                std = _g(c, "standard", "f1", "mean")
                rows.append([data, noise] + [
                    _f(_g(c, det, "f1", "mean")) + ("" if det == "standard" or std is None or
                                                      _g(c, det, "f1", "mean") is None else
                                                      f" ({_g(c, det, 'f1', 'mean') - std:+.3f})") for det in dets])
        out += _table(["data", "noise"] + [f"`{det}`" for det in dets], rows)
        below = ab.get("cells_below_standard") or {}
        if below:
            out += ["Cells below the standard recipe: " + "; ".join(
                f"`{det}` {len(cells)}" + (f" ({', '.join(cells)})" if cells else "") for det, cells in below.items())
                + ".", ""]
        if ab.get("qualifies"):
            out += ["Qualifies under the selection rule: " + ", ".join(
                f"`{det}` {_f(ok)}" for det, ok in ab["qualifies"].items()) + ".", ""]
        diag = ab.get("diagnostics_at_5pct") or {}
        if diag:
            shown = [det for det in ("prune_by_noise_rate", "flag_all_minority", "standard") if det in dets]
            out += ["What bounds the flags (mean over seeds): " + "; ".join(
                f"`{k}`: {v}" for k, v in (ab.get("diagnostics") or {}).items()) + ".", ""]

            def pr(c: dict, det: str) -> str:
                return f"{_f(_g(c, det, 'precision', 'mean'))} / {_f(_g(c, det, 'recall', 'mean'))}"

            out += _table(["data", "noise", "noise share of the minority label", "separability AUC",
                           "bound: P at R ≥ 0.85"] + [f"`{det}` P / R" for det in shown],
                          [[data, noise, _f(dg.get("minority_noise_share")), _f(dg.get("separability_auc")),
                            _f(dg.get("bound_precision_at_recall_085"))]
                           + [pr(_g(table, data, noise) or {}, det) for det in shown]
                           for data, by_noise in sorted(diag.items()) for noise, dg in sorted(by_noise.items())])
        if ab.get("decision"):
            out += [f"Decision: {ab['decision']}", ""]
    return out


def quality_study(d: dict) -> list[str]:
    out = ["## Label-issue detectors side by side (study)", ""] + _source("quality_study.json", str(d.get("command", "?")).strip())
    dm, sm = d.get("demo") or {}, d.get("sms") or {}
    names = sorted(set(dm.get("mean_precision_recall") or {}) | set(sm.get("mean_precision_recall") or {}))

    def pr(x: Any) -> str:
        return f"{_f(x[0])} / {_f(x[1])}" if isinstance(x, list) and len(x) == 2 else "—"

    out += ["Mean precision / recall over the study's seeds:", ""]
    out += _table(["detector", "demo P / R", "SMS P / R"],
                  [[n, pr(_g(dm, "mean_precision_recall", n)), pr(_g(sm, "mean_precision_recall", n))] for n in names])
    names = sorted(set(dm.get("mean_best_cut_at_recall_085") or {}) | set(sm.get("mean_best_cut_at_recall_085") or {}))
    out += ["Best precision any per-class flag count reaches at recall ≥ 0.85 (a bound on every count rule):", ""]
    out += _table(["ranking", "demo P / R", "SMS P / R"],
                  [[n, pr(_g(dm, "mean_best_cut_at_recall_085", n)), pr(_g(sm, "mean_best_cut_at_recall_085", n))]
                   for n in names])
    return out


def train(d: dict) -> list[str]:
    out = ["## Train and compress", ""] + _source("train.json", "python -m benchmarks.bench_train [--only NAME]")
    env = d.get("env") or {}
    out += [f"{_f(env.get('cpus'))} CPU cores, torch {env.get('torch', '?')}; overrides of the last run: "
            f"{json.dumps(env.get('overrides') or {}, sort_keys=True)}.", ""]
    for name, r in sorted((d.get("datasets") or {}).items()):
        c = r.get("compress") or {}
        out += [f"### {name}", ""]
        tr = r.get("train") or {}
        out += [f"Training {_f(r.get('train_wall_s'), 1)} s wall, {_f(r.get('train_cpu_s'), 1)} s CPU; best epoch "
                f"{_f(tr.get('best_epoch'))} of {_f(tr.get('epochs_run'))}; chosen variant `{c.get('chosen', '?')}`; "
                f"test set {_f(c.get('n_test'))} records.", ""]
        rows = [[("**" + v.get("name", "?") + "** (chosen)") if v.get("name") == c.get("chosen") else v.get("name", "?"),
                 _f(v.get("size_mb"), 1), _f(v.get("size_ratio"), 2), _f(v.get("latency_p50_ms"), 2),
                 _f(v.get("speedup_b1"), 2), v.get("pr_auc"), v.get("f1"), v.get("recall_at_1pct_fpr")]
                for v in c.get("variants") or []]
        out += _table(["variant", "MB", "× smaller", "p50 ms (b1)", "× faster", "PR-AUC", "F1", "recall @ 1% FPR"],
                      rows)
        bs = r.get("bootstrap_vs_baseline") or {}
        brow = [[k, _f(v.get("pr_auc_diff_mean")), _f(v.get("pr_auc_diff_ci95")), _f(v.get("f1_diff_mean")),
                 _f(v.get("f1_diff_ci95"))] for k, v in sorted((bs.get("variants") or {}).items())]
        if brow:
            out += [f"Paired bootstrap against `{bs.get('vs', '?')}` ({_f(bs.get('n_boot'))} resamples, "
                    f"{_f(bs.get('n_positive'))} positives):", ""]
            out += _table(["variant", "PR-AUC diff", "95% CI", "F1 diff", "95% CI"], brow)
        ck = r.get("checks") or {}
        if ck:
            out += ["Checks: " + ", ".join(f"`{k}` {'yes' if v else 'no'}" for k, v in sorted(ck.items())) + ".", ""]
    return out


def _ci(x: Any) -> str:
    """A paired-bootstrap difference: point [95% interval]."""
    return "—" if not x else f"{_f(x.get('diff'))} [{_f(x.get('ci_low'))}, {_f(x.get('ci_high'))}]"


def slm_datasets(d: dict) -> list[str]:
    out = ["## The SLM on real data: SMS, smishing, and SMS -> smishing", ""] + _source(
        "slm_datasets.json", str(d.get("command", "python -m benchmarks.bench_slm_datasets")))
    out += [f"Path: {d.get('path', '?')}. Acceptance: {d.get('acceptance_rule', '?')}", ""]
    if d.get("note"):
        out += [f"Note: {d['note']}.", ""]

    ci = _ci
    rows = []
    for name, r in sorted((d.get("datasets") or {}).items()):
        if "error" in r:
            rows.append([name, f"failed: {r['error'][:120]}"] + [""] * 7)
            continue
        c, b, vb, s = r.get("chosen_figures") or {}, r.get("baseline_figures") or {}, r.get("versus_baseline") or {}, \
            r.get("stage_seconds") or {}
        rows.append([name, f"`{r.get('chosen')}`", f"{_f(r.get('n_test'))} ({_f(r.get('test_positives'))})",
                     f"{_f(c.get('pr_auc'))} / {_f(c.get('f1'))}", f"{_f(b.get('pr_auc'))} / {_f(b.get('f1'))}",
                     ci(_g(vb, "test", "pr_auc")), ci(_g(vb, "test", "f1")),
                     f"{ci(_g(vb, 'validation', 'pr_auc'))}; {ci(_g(vb, 'validation', 'f1'))}",
                     f"{_f(s.get('train'), 0)} / {_f(s.get('compress'), 0)}",
                     _f(_g(r, "acceptance", "accepted"))])
    out += _table(["data set", "chosen", "test n (fraud)", "chosen PR-AUC / F1", "baseline PR-AUC / F1",
                   "test ΔPR-AUC [95%]", "test ΔF1 [95%]", "validation ΔPR-AUC; ΔF1", "train / compress s",
                   "not below baseline"], rows)
    x = d.get("cross_dataset") or {}
    if x.get("error"):
        out += [f"Cross-data-set: failed ({x['error'][:200]}).", ""]
    elif x:
        out += [f"Cross-data-set: trained on SMS dev, scored with `fraudslm predict` on {_f(x.get('n'))} smishing dev "
                f"texts not in SMS dev ({_f(x.get('positives'))} spam/smishing; {_f(x.get('removed_as_in_sms_dev'))} "
                "removed as exact matches after whitespace normalisation).", ""]
        rows = [[f"{k} (`{_g(x, k, 'kind')}`)", _g(x, k, "pr_auc"), _g(x, k, "f1"), _g(x, k, "precision"),
                 _g(x, k, "recall"), _f(_g(x, k, "threshold"), 4),
                 f"[{_f(_g(x, k, 'router_band', 'low'), 4)}, {_f(_g(x, k, 'router_band', 'high'), 4)})",
                 _g(x, k, "router", "coverage"),
                 _g(x, k, "router", "auto_precision"), _f(_g(x, k, "no_text_in_output"))]
                for k in ("slm", "baseline") if x.get(k)]
        out += _table(["model", "PR-AUC", "F1", "precision", "recall", "shipped threshold", "review band",
                       "auto coverage", "auto precision", "no text in output"], rows)
        dx = x.get("slm_minus_baseline") or {}
        out += [f"SLM minus baseline (paired bootstrap, {_f(x.get('n_boot'))} resamples): "
                f"PR-AUC {ci(dx.get('pr_auc'))}, F1 {ci(dx.get('f1'))}.", ""]
    return out


def peft_methods(d: dict) -> list[str]:
    out = ["## Parameter-efficient methods on the same splits", ""] + _source(
        "peft_methods.json", str(d.get("command", "python -m benchmarks.bench_peft_methods")).strip())
    sp = d.get("splits") or {}
    out += [f"Splits: `{sp.get('path', '?')}` (data version {sp.get('data_version', '?')}). Rule: {d.get('rule', '?')}.",
            ""]
    rows = []
    for r in d.get("methods") or []:
        if "error" in r:
            rows.append([r.get("method"), f"failed: {str(r['error'])[:120]}"] + [""] * 7)
            continue
        rows.append([f"`{r.get('method')}`", f"{_f(r.get('trainable_params'))} ({_f(100 * (r.get('trainable_share') or 0), 2)}%)",
                     _f(r.get("learning_rate"), 4), f"{_f(r.get('epochs_run'))} (best {_f(r.get('best_epoch'))})",
                     _f(r.get("val_pr_auc")), _f(r.get("test_pr_auc")), _f(r.get("test_f1")),
                     _f(r.get("training_time_s"), 0), _f(r.get("threads"))])
    return out + _table(["method", "trainable parameters", "learning rate", "epochs", "validation PR-AUC",
                         "test PR-AUC", "test F1", "training s", "threads"], rows)


def orchestration(d: dict) -> list[str]:
    out = ["## Orchestration (DVC and Prefect overhead)", ""] + _source(
        "orchestration.json", "python -m benchmarks.bench_orchestration")
    q = d.get("quality_param_change") or {}
    rows = [["the stages called directly", d.get("baseline_manual_s"), ", ".join(d.get("stages") or [])],
            ["`dvc repro`, everything", d.get("dvc_full_repro_s"), ", ".join(d.get("dvc_full_ran") or [])],
            ["`dvc repro` again (nothing changed)", d.get("dvc_noop_repro_s"), ", ".join(d.get("dvc_noop_ran") or []) or "none"],
            ["`dvc repro` after changing quality.k_folds", q.get("seconds"), ", ".join(q.get("ran") or [])],
            ["Prefect flow over an up-to-date pipeline", d.get("prefect_flow_noop_s"), "none (all skipped)"]]
    out += [f"Demo n={_f(d.get('demo_n'))}, {_f(d.get('cpus'))} cores.", ""]
    out += _table(["run", "seconds", "stages run"], rows)
    return out


def notebook(d: dict) -> list[str]:
    out = ["## Lab notebook (hand-recorded)", "", d.get("about", ""), ""]
    for e in d.get("entries") or []:
        out += [f"### {e.get('title', '?')}", "", e.get("markdown", "").rstrip(), ""]
    return out


def generic(name: str, d: Any) -> list[str]:
    """Any other results file: its scalar figures, flattened."""
    rows: list[list[Any]] = []

    def walk(x: Any, prefix: str) -> None:
        if isinstance(x, dict):
            for k in sorted(x):
                walk(x[k], f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(x, list) and not all(isinstance(v, (int, float, str, bool)) for v in x):
            for i, v in enumerate(x):
                walk(v, f"{prefix}[{i}]")
        else:
            rows.append([prefix, _f(x) if not isinstance(x, list) else ", ".join(_f(v) for v in x)])

    walk(d, "")
    more = [f"… and {len(rows) - 300} more figures in the file.", ""] if len(rows) > 300 else []
    return ([f"## {name}", "", f"Source: `benchmarks/results/{name}` (rendered as a flat list of its figures).", ""]
            + _table(["figure", "value"], rows[:300]) + more)


SECTIONS: list[tuple[str, Callable[[dict], list[str]]]] = [
    ("demo.json", demo), ("ingest.json", ingest), ("bench_pii_quality.json", pii_quality),
    ("bench_pii_speed.json", pii_speed), ("anonymize.json", anonymize), ("quality.json", quality),
    ("quality_study.json", quality_study), ("label_noise.json", label_noise), ("train.json", train), ("slm_datasets.json", slm_datasets),
    ("peft_methods.json", peft_methods),
    ("orchestration.json", orchestration),
]


README = ROOT / "README.md"
BEGIN = "<!-- BEGIN headline: generated by `python -m benchmarks.make_docs` from benchmarks/results/*.json -->"
END = "<!-- END headline -->"


def headline(results: Path = RESULTS) -> str:
    """The README's table of headline figures, each with the command that measures it."""

    def load(name: str) -> dict:
        p = results / name
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else {}

    pq, an, q, dm, ing = (load(n) for n in ("bench_pii_quality.json", "anonymize.json", "quality.json", "demo.json",
                                            "ingest.json"))
    rows: list[list[str]] = []
    per = _g(pq, "demo", "per_type", default={}) or {}
    if per:
        low = min(v.get("recall_any", 0) for v in per.values())
        rows.append(["PII recall on the demo's planted spans (every type, lowest)",
                     f"{_f(low)} ({_f(_g(pq, 'demo', 'gold_spans'))} spans); character precision "
                     f"{_f(_g(pq, 'demo', 'char_precision'))}", "`python -m benchmarks.bench_pii_quality --n 3000`"])
    dev = _g(pq, "dev_json", "ours_eval_entities", "span_iou_0.5")
    pub = _g(pq, "dev_json", "published", "presidio_customised_transformer")
    if dev:
        rows.append(["PII detection on `pii_benchmark/dev.json`, P / R / F2 (span IoU 0.5)",
                     f"{_f(dev.get('precision'))} / {_f(dev.get('recall'))} / {_f(dev.get('f2'))}"
                     + (f" (published customised Presidio {_f(pub.get('precision'))} / {_f(pub.get('recall'))} / "
                        f"{_f(pub.get('f2'))})" if pub else ""), "`python -m benchmarks.bench_pii_quality --n 3000`"])
    i20 = _g(pq, "issue20", "dev_json") or {}
    if i20.get("after"):
        def rec(side: str, t: str) -> str:
            return _f(_g(i20, side, "recall_by_type", t, "recall"))

        rows.append(["PII recall on `pii_benchmark/dev.json` (caught = 90% of a span's characters covered): PERSON / "
                     "STREET_ADDRESS, character precision",
                     f"{rec('after', 'PERSON')} / {rec('after', 'STREET_ADDRESS')}, "
                     f"{_f(_g(i20, 'after', 'char_precision'))} (before the learned NER {rec('before', 'PERSON')} / "
                     f"{rec('before', 'STREET_ADDRESS')}, {_f(_g(i20, 'before', 'char_precision'))}; vanilla Presidio "
                     f"{rec('vanilla_presidio', 'PERSON')} / {rec('vanilla_presidio', 'STREET_ADDRESS')}; targets 0.97, "
                     "0.90)", "`python -m benchmarks.bench_pii_quality --n 3000`"])
    sp = load("bench_pii_speed.json")
    if sp.get("speedup_vs_naive") is not None:
        rows.append(["`fraudslm detect-pii` speed vs a naive Presidio loop / vs spaCy NER alone (2 processes)",
                     f"{_f(sp['speedup_vs_naive'], 2)}× / {_f(sp.get('ratio_vs_spacy_ner'), 2)}× (targets 5× / 0.9×; "
                     + (f"median of {sp['repeat']} rounds, " if sp.get("repeat") else "")
                     + f"load average {_f(sp.get('load_average_1min_at_end'), 1)})",
                     f"`{_pii_speed_cmd(sp)}`"])
    if an:
        rounds = [r for r in an.get("round_stage_vs_naive") or [] if isinstance(r, (int, float))]
        target = _g(an, "targets", "stage_vs_naive")
        spread = ""
        if len(rounds) > 1:
            under = sum(1 for r in rounds if target is not None and r < target)
            spread = (f"; medians of {len(rounds)} rounds, per-round ratios {min(rounds):.2f}-{max(rounds):.2f}, "
                      f"{under} of {len(rounds)} under target")
        rows.append(["anonymize stage speed vs a naive Presidio loop",
                     f"{_f(_g(an, 'ratios', 'stage_vs_naive'), 2)}× (target {_f(target, 1)}×"
                     f"{', missed' if not an.get('meets_targets') else ''}{spread})", f"`{an.get('command', '?')}`"])
    sms = _g(q, "sms_spam", "mean_at_5pct")
    if sms:
        rows.append(["label issues, SMS spam with 5% flipped labels (mean of "
                     f"{len(_g(q, 'sms_spam', 'seeds_at_5pct', default=[]))} seeds), P / R",
                     f"{_pr(sms.get('ours'))} (standard cleanlab recipe {_pr(sms.get('standard'))})",
                     "`python -m benchmarks.bench_quality`"])
    ln = load("label_noise.json")
    worst = _g(ln, "summary", "worst_case_vs_standard")
    if worst:
        rows.append(["label issues at 5% noise, worst case over data sets and noise models: F1 vs standard recipe",
                     f"{_f(worst.get('stage_f1'))} vs {_f(worst.get('standard_f1'))} ({worst.get('data')}, "
                     f"{worst.get('noise')}); every case at least the standard: "
                     f"{_f(_g(ln, 'summary', 'all_f1_at_least_standard'))}",
                     "`python -m benchmarks.bench_label_noise`"])
    if _g(ln, "speed", "stage_seconds") is not None:
        rows.append([f"quality stage on {_f(_g(ln, 'speed', 'records'))} records",
                     f"{_f(_g(ln, 'speed', 'stage_seconds'), 1)} s ({_f(_g(ln, 'speed', 'ratio_stage_over_standard'), 2)}"
                     f"× the standard recipe)", "`python -m benchmarks.bench_label_noise --only speed`"])
    if _g(q, "demo", "ours"):
        rows.append(["label issues, demo (5% flips), P / R",
                     f"{_pr(_g(q, 'demo', 'ours'))} (standard {_pr(_g(q, 'demo', 'standard'))})",
                     "`python -m benchmarks.bench_quality`"])
    if _g(q, "speed", "seconds") is not None:
        rows.append([f"quality stage on {_f(_g(q, 'speed', 'records'))} records",
                     f"{_f(_g(q, 'speed', 'seconds'), 1)} s (target {_f(_g(q, 'speed', 'target_seconds'))} s)",
                     "`python -m benchmarks.bench_quality`"])
    # bench_train's per-data-set rows (an older code version, not the CLI path) stay in docs/benchmarks.md only;
    # the headline quotes the CLI-path runs of bench_slm_datasets
    sd = load("slm_datasets.json")
    for name in sorted(sd.get("datasets") or {}):
        r = sd["datasets"][name]
        vt = _g(r, "versus_baseline", "test") or {}
        if r.get("chosen"):
            rows.append([f"shipped model on {name} dev (own CLI run): test PR-AUC / F1 minus TF-IDF baseline, 95%",
                         f"{_ci(vt.get('pr_auc'))} / {_ci(vt.get('f1'))} (`{r['chosen']}` "
                         f"{_f(_g(r, 'chosen_figures', 'pr_auc'))} / {_f(_g(r, 'chosen_figures', 'f1'))})",
                         "`python -m benchmarks.bench_slm_datasets`"])
    xs = sd.get("cross_dataset") or {}
    if _g(xs, "slm", "pr_auc") is not None:
        rows.append([f"SMS-trained model, `fraudslm predict` on {_f(xs.get('n'))} unseen smishing texts: PR-AUC / F1",
                     f"{_f(_g(xs, 'slm', 'pr_auc'))} / {_f(_g(xs, 'slm', 'f1'))} (baseline "
                     f"{_f(_g(xs, 'baseline', 'pr_auc'))} / {_f(_g(xs, 'baseline', 'f1'))})",
                     "`python -m benchmarks.bench_slm_datasets --only cross`"])
    pm = {r.get("method"): r for r in (load("peft_methods.json").get("methods") or []) if "error" not in r}
    if pm:
        rows.append(["peft methods on the demo splits: " + " / ".join(f"`{k}`" for k in pm)
                     + ": test PR-AUC (trainable parameters)",
                     " / ".join(f"{_f(r.get('test_pr_auc'))} ({_f(r.get('trainable_params'))})" for r in pm.values()),
                     "`python -m benchmarks.bench_peft_methods`"])
    if _g(dm, "target", "seconds") is not None:
        rows.append(["demo generator, 100,000 records", f"{_f(_g(dm, 'target', 'seconds'), 1)} s",
                     "`python -m benchmarks.bench_demo`"])
    if _g(ing, "runs", "x1", "ingest"):
        rows.append(["ingest speed (card transactions CSV)",
                     f"{_f(_g(ing, 'runs', 'x1', 'ingest', 'rows_per_cpu_s'), 0)} rows per CPU second, "
                     f"peak {_f(_g(ing, 'runs', 'x1', 'ingest', 'peak_rss_mb'), 0)} MB",
                     "`python -m benchmarks.bench_ingest`"])
    return "\n".join([BEGIN, ""] + _table(["what", "measured", "command"], rows) + [END])


def update_readme(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md lacks the {BEGIN!r} ... {END!r} markers")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]


def render(results: Path = RESULTS) -> str:
    files = {p.name: p for p in sorted(results.glob("*.json"))}
    out = ["<!-- GENERATED by `python -m benchmarks.make_docs` from benchmarks/results/*.json: do not edit by hand. -->",
           "", "# Benchmarks", "",
           "Every figure below is read from the results file its benchmark writes; rerun the command and then "
           "`python -m benchmarks.make_docs` (or `make docs`). Machine: 2 CPU cores shared with other jobs unless a "
           "section says otherwise; ratios compare contenders measured in the same run.", ""]
    out += ["Contents: " + ", ".join(f"`{n}`" for n in files) + ".", ""]
    done = set()
    for name, fn in SECTIONS:
        if name in files:
            out += fn(json.loads(files[name].read_text(encoding="utf-8")))
            done.add(name)
    for name, p in files.items():
        if name not in done and name != "notebook.json":
            out += generic(name, json.loads(p.read_text(encoding="utf-8")))
    if "notebook.json" in files:
        out += notebook(json.loads(files["notebook.json"].read_text(encoding="utf-8")))
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/benchmarks.md is not up to date")
    args = ap.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    want = {OUT: render(), README: update_readme(readme, headline())}
    stale = [p for p, text in want.items() if (p.read_text(encoding="utf-8") if p.exists() else "") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run `python -m benchmarks.make_docs`", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".md.tmp")
        tmp.write_text(want[p], encoding="utf-8")
        tmp.replace(p)
        print(f"wrote {p.relative_to(ROOT)} ({len(want[p]):,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
