"""Dataset versions: what changed between two revisions of the pipeline's outputs (`fraudslm diff REV_A REV_B`).

A version is a git revision (a `data-v<date>-<hash>` tag made by the pipeline flow, a commit, a branch) or
`workspace`. At each one the paths come from that revision's params.yaml, the metrics from the stages'
`metrics.json` (cache: false, so in git), the per-source counts from the ledgers (DVC outputs, read through
`dvc.api` from the cache) and the output hashes from dvc.lock. Only numbers are compared and printed: no value from
the data is read.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from pipeline import dvcops
from pipeline.contracts import LEDGER_FILE, LEDGER_KEYS, METRICS_FILE, STAGES
from pipeline.errors import ConfigError

WORKSPACE = "workspace"


# ---------------------------------------------------------------------------------------------------------------
# reading one revision


def _git_root(start: Path) -> Path:
    proc = dvcops.git(["rev-parse", "--show-toplevel"], start, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"{start}: not inside a git repository")
    return Path(proc.stdout.strip())


def _resolve_rev(root: Path, rev: str) -> Optional[str]:
    if rev == WORKSPACE:
        return None
    proc = dvcops.git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"{rev}: unknown git revision in {root}")
    return proc.stdout.strip()


def _read_git(root: Path, sha: Optional[str], rel: str) -> Optional[bytes]:
    if sha is None:
        p = root / rel
        return p.read_bytes() if p.is_file() else None
    proc = subprocess.run(["git", "show", f"{sha}:{rel}"], cwd=root, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


class _DvcReader:
    """DVC-tracked files at one revision, from the local cache (one DVCFileSystem per revision)."""

    def __init__(self, root: Path, sha: Optional[str]) -> None:
        self.root, self.sha, self._fs = root, sha, None

    def read(self, rel: str) -> Optional[bytes]:
        if self.sha is None:
            p = self.root / rel
            return p.read_bytes() if p.is_file() else None
        try:
            if self._fs is None:
                from dvc.fs import DVCFileSystem

                self._fs = DVCFileSystem(repo=str(self.root), rev=self.sha)
            return self._fs.read_bytes(rel)
        except Exception:  # noqa: BLE001 - not cached here / not pushed: the diff leaves it out
            return None


def _json(blob: Optional[bytes]) -> Optional[Any]:
    if blob is None:
        return None
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON document as {dotted.key: number} (strings and lists are left out)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_numbers(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, bool):
        out[prefix] = int(obj)
    elif isinstance(obj, (int, float)) and obj == obj:
        out[prefix] = obj
    return out


def read_version(root: Path, rev: str) -> dict[str, Any]:
    """Numbers describing the dataset/model version at `rev`."""
    sha = _resolve_rev(root, rev)
    params = yaml.safe_load(_read_git(root, sha, "params.yaml") or b"") or {}
    paths = params.get("paths") or {}
    lock = dvcops.read_lock(root, sha) if sha else dvcops.read_lock(root)
    values: dict[str, float] = {}
    notes: list[str] = []
    dvc_reader = _DvcReader(root, sha)
    for st in STAGES:
        folder = paths.get(st.folder)
        if not folder or st.name == "report":
            continue
        # through the stage's contract (pipeline.contracts): the metrics in git, the ledger from the DVC cache
        metrics = _json(_read_git(root, sha, f"{folder}/{METRICS_FILE}"))
        if metrics is not None:
            try:
                flat = st.metrics.model_validate(metrics).flat()
            except ValidationError as exc:
                notes.append(f"{folder}/{METRICS_FILE} at {rev}: breaks contract {st.metrics.__name__} "
                             f"({exc.errors()[0]['loc']}); left out")
            else:
                for k, v in flatten_numbers(flat).items():
                    values[f"{st.name}: {k}"] = v
        ledger = _json(dvc_reader.read(f"{folder}/{LEDGER_FILE}"))
        if ledger is not None:
            try:
                sources = st.ledger.model_validate(ledger).sources
            except ValidationError:
                notes.append(f"{folder}/{LEDGER_FILE} at {rev}: breaks contract {st.ledger.__name__}; left out")
                sources = {}
            for src, counts in sorted(sources.items()):
                for k in LEDGER_KEYS:
                    values[f"{st.name} ledger: {src}.{k}"] = getattr(counts, k)
    hashes = {}
    for stage in lock.get("stages", {}):
        for path, md5 in dvcops.out_hashes(lock, stage).items():
            hashes[path] = md5
    return {
        "rev": rev,
        "commit": sha,
        "dataset": dvcops.dataset_hash(lock) if lock else None,
        "values": values,
        "outputs": hashes,
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------------------------------
# comparing two


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    rows = []
    unchanged = 0
    for key in sorted(set(a["values"]) | set(b["values"]), key=_row_order):
        va, vb = a["values"].get(key), b["values"].get(key)
        if va == vb:
            unchanged += 1
            continue
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        rows.append({"metric": key, "a": va, "b": vb, "delta": _round(delta)})
    outputs = []
    for path in sorted(set(a["outputs"]) | set(b["outputs"])):
        ha, hb = a["outputs"].get(path), b["outputs"].get(path)
        if ha != hb:
            outputs.append({"path": path, "a": ha, "b": hb})
    return {
        "a": {k: a[k] for k in ("rev", "commit", "dataset")},
        "b": {k: b[k] for k in ("rev", "commit", "dataset")},
        "same_dataset": a["dataset"] == b["dataset"],
        "changed": rows,
        "unchanged": unchanged,
        "changed_outputs": outputs,
        "notes": a.get("notes", []) + b.get("notes", []),
    }


def _row_order(key: str) -> tuple[int, str]:
    stage = key.split(":")[0].replace(" ledger", "")
    order = [s.name for s in STAGES]
    return (order.index(stage) if stage in order else len(order), key)


def _round(x: Any) -> Any:
    return round(x, 6) if isinstance(x, float) else x


def diff_versions(
    rev_a: str, rev_b: str = "HEAD", params_path: str | Path = "params.yaml", as_json: bool = False
) -> dict[str, Any]:
    """Compare two dataset versions and print the result (a rich table, or JSON with `as_json`)."""
    start = Path(params_path).resolve().parent if Path(params_path).exists() else Path.cwd()
    root = _git_root(start)
    result = compare(read_version(root, rev_a), read_version(root, rev_b))
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        render(result)
    return result


def render(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    a, b = result["a"], result["b"]

    def label(v: dict[str, Any]) -> str:
        commit = (v["commit"] or "")[:8]
        return f"{v['rev']}" + (f" ({commit})" if commit and commit not in v["rev"] else "")

    same = "same" if result["same_dataset"] else "different"
    console.print(f"dataset {a['dataset'] or 'n/a'} -> {b['dataset'] or 'n/a'} ({same} dataset)")
    table = Table(title=f"{label(a)} -> {label(b)}")
    table.add_column("metric", no_wrap=True)
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("delta", justify="right")
    for row in result["changed"]:
        table.add_row(row["metric"], _fmt(row["a"]), _fmt(row["b"]), _fmt(row["delta"], signed=True))
    console.print(table)
    console.print(f"{len(result['changed'])} changed, {result['unchanged']} unchanged")
    for note in result.get("notes", []):
        console.print(f"note: {note}")
    if result["changed_outputs"]:
        out = Table(title="outputs whose DVC hash changed")
        out.add_column("path")
        out.add_column("A")
        out.add_column("B")
        for row in result["changed_outputs"]:
            out.add_row(row["path"], (row["a"] or "-")[:12], (row["b"] or "-")[:12])
        console.print(out)


def _fmt(x: Any, signed: bool = False) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:+.4g}" if signed else f"{x:.4g}"
    return f"{x:+d}" if signed and isinstance(x, int) else str(x)
