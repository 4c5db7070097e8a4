"""Report figures as inline PNG (base64 data URIs): matplotlib's object API on the Agg canvas (no pyplot state,
no display). Each plot takes numbers from report.json only and returns None when it has nothing to draw."""

from __future__ import annotations

import base64
import io
from typing import Any, Optional

PALETTE = {"before": "#9aa5b1", "after": "#1f5fa8", "fraud": "#c0392b", "legit": "#1f5fa8", "accent": "#e67e22"}
DPI = 120


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    # no Software/date metadata: the same numbers give the same bytes
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#e5e8eb", linewidth=0.6)
    ax.set_axisbelow(True)


def _pct(v: Optional[float]) -> float:
    return 100.0 * v if isinstance(v, (int, float)) else 0.0


def class_balance(report: dict[str, Any]) -> Optional[str]:
    """Fraud prevalence before/after the quality stage per source, and before/after rebalancing per split."""
    q = report["sections"]["quality"]["class_balance"]
    sp = report["sections"]["splits"].get("class_balance") or {}
    before, after = q.get("before") or {}, q.get("after") or {}
    sources = sorted(set(before) | set(after))
    splits = [s for s in ("train", "validation", "test") if s in sp]
    if not sources and not splits:
        return None
    fig = _figure(7.2, 2.8)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(len(sources), 1), max(len(splits), 1) + 0.5]})
    for ax, names, data, title in (
        (axes[0], sources, (before, after), "per source: before / after quality"),
        (axes[1], splits, ({s: sp[s].get("before") or {} for s in splits},
                           {s: sp[s].get("after") or {} for s in splits}), "per split: before / after rebalancing"),
    ):
        _style(ax)
        ax.set_title(title, fontsize=9)
        if not names:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=9, color="#666", transform=ax.transAxes)
            ax.set_xticks([])
            continue
        x = range(len(names))
        w = 0.38
        for off, phase, col in ((-w / 2, 0, PALETTE["before"]), (w / 2, 1, PALETTE["after"])):
            vals = [_pct((data[phase].get(n) or {}).get("prevalence")) for n in names]
            bars = ax.bar([i + off for i in x], vals, width=w, color=col, label=("before", "after")[phase])
            for b, v in zip(bars, vals):
                if v:
                    ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=6.5, xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("fraud %", fontsize=8)
    axes[0].legend(fontsize=7, frameon=False, loc="upper left")
    return _png(fig)


def split_prevalence(report: dict[str, Any]) -> Optional[str]:
    splits = report["sections"]["splits"].get("splits") or {}
    names = [s for s in ("train", "validation", "test") if s in splits]
    if not names:
        return None
    fig = _figure(4.6, 2.6)
    ax = fig.subplots()
    _style(ax)
    vals = [_pct(splits[n].get("prevalence")) for n in names]
    bars = ax.bar(names, vals, color=PALETTE["after"], width=0.55)
    for b, n in zip(bars, names):
        ax.annotate(f"{b.get_height():.1f}%  (n={splits[n].get('n', 0)})", (b.get_x() + b.get_width() / 2,
                    b.get_height()), ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_ylabel("fraud %", fontsize=8)
    ax.set_title("prevalence per split", fontsize=9)
    ax.set_ylim(0, max(vals + [1.0]) * 1.25)
    return _png(fig)


def entity_counts(report: dict[str, Any]) -> Optional[str]:
    ents = (report["sections"]["pii"].get("entities") or {})
    by_type = ents.get("by_type") or {}
    if not by_type:
        return None
    by_source = ents.get("by_source") or {}
    types = sorted(by_type, key=lambda t: (by_type[t], t))
    fig = _figure(7.2, 0.45 + 0.24 * len(types))
    ax = fig.subplots()
    _style(ax)
    ax.grid(axis="x", color="#e5e8eb", linewidth=0.6)
    ax.grid(axis="y", visible=False)
    if by_source:
        import matplotlib

        cmap = matplotlib.colormaps["tab10"]
        left = [0] * len(types)
        for i, src in enumerate(sorted(by_source)):
            vals = [by_source[src].get(t, 0) for t in types]
            ax.barh(types, vals, left=left, color=cmap(i % 10), label=src, height=0.7)
            left = [a + b for a, b in zip(left, vals)]
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    else:
        ax.barh(types, [by_type[t] for t in types], color=PALETTE["after"], height=0.7)
    for i, t in enumerate(types):
        ax.annotate(str(by_type[t]), (by_type[t], i), va="center", fontsize=7, xytext=(2, 0),
                    textcoords="offset points")
    ax.set_xlabel("entities detected", fontsize=8)
    ax.set_title("PII entities per type (stacked by source)" if by_source else "PII entities per type", fontsize=9)
    return _png(fig)


def _size(row: dict[str, Any]) -> Optional[float]:
    for k in ("size_mb", "size_MB", "mb", "size"):
        if isinstance(row.get(k), (int, float)):
            return float(row[k])
    if isinstance(row.get("size_bytes"), (int, float)):
        return row["size_bytes"] / 1e6
    return None


def size_vs_pr_auc(report: dict[str, Any]) -> Optional[str]:
    comp = report["sections"]["model"].get("compression") or {}
    rows = [r for r in comp.get("variants") or [] if _size(r) is not None and isinstance(r.get("pr_auc"), (int, float))]
    if not rows:
        return None
    fig = _figure(5.6, 2.9)
    ax = fig.subplots()
    _style(ax)
    ax.grid(axis="x", color="#e5e8eb", linewidth=0.6)
    chosen = comp.get("chosen")
    for r in rows:
        is_c = r["name"] == chosen
        ax.scatter(_size(r), r["pr_auc"], s=60 if is_c else 30, color=PALETTE["accent"] if is_c else PALETTE["after"],
                   zorder=3, edgecolor="black" if is_c else "none")
        ax.annotate(r["name"] + ("  (chosen)" if is_c else ""), (_size(r), r["pr_auc"]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("size (MB)", fontsize=8)
    ax.set_ylabel("PR-AUC (test)", fontsize=8)
    ax.set_title("model size vs PR-AUC", fontsize=9)
    return _png(fig)


def all_plots(report: dict[str, Any]) -> dict[str, Optional[str]]:
    return {
        "class_balance": class_balance(report),
        "split_prevalence": split_prevalence(report),
        "entity_counts": entity_counts(report),
        "size_vs_pr_auc": size_vs_pr_auc(report),
    }
