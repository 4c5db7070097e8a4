"""report.json -> report.html: one self-contained page (jinja2 with autoescape on, inline CSS, inline PNG plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

TEMPLATE = "report.html.j2"


def _num(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return f"{int(v):,}"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.1f}"
    return str(v)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) and not isinstance(v, bool) else "–"


def _signed(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        s = _num(v)
        return s if v < 0 else f"+{s}"
    return "–"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        autoescape=True,  # every value is HTML-escaped: a '<script>' in a source name or text renders as text
        undefined=jinja2.ChainableUndefined,  # a missing key of an older/partial report renders empty, never crashes
        trim_blocks=False,
        lstrip_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(num=_num, pct=_pct, signed=_signed, split=lambda v, sep: str(v).split(sep))
    return env


def render_html(report: dict[str, Any], plots: dict[str, Any]) -> str:
    return environment().get_template(TEMPLATE).render(report=report, plots=plots)
