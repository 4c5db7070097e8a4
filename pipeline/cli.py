"""`fraudslm` command line: parse arguments, load params, call the stage function. No logic lives here."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

import typer

from pipeline.errors import FraudSLMError


def _no_collection_at_exit() -> None:
    """Move what is still alive to the collector's permanent generation when the process exits: the interpreter's
    final collections then skip it. A command that loaded the PII detector (a spaCy model, Presidio, the recognizers'
    patterns) otherwise spends about 0.3 s tracing that heap after its outputs are written (docs/benchmarks.md).
    Nothing is lost: the objects are freed as before, only not traced for cycles."""
    gc.freeze()


atexit.register(_no_collection_at_exit)  # registered first, so it runs after every later atexit handler

app = typer.Typer(add_completion=False, no_args_is_help=True, help="fraudslm: privacy-preserving fraud data pipeline")

ParamsOpt = typer.Option(Path("params.yaml"), "--params", help="params.yaml to load")
SetOpt = typer.Option(None, "--set", help="override a param, e.g. --set quality.policy=drop (repeatable)")


def _fail(msg: str, code: int) -> None:
    typer.echo(f"fraudslm: {msg}", err=True)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Map errors to exit codes with one line on stderr. Unexpected errors print their type and place only
    (their message could carry a PII value); FRAUDSLM_DEBUG=1 prints the traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except FraudSLMError as exc:
            _fail(" ".join(str(exc).split()), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # noqa: BLE001 - the CLI is the last line of defence
            if os.environ.get("FRAUDSLM_DEBUG"):
                traceback.print_exc()
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            _fail(f"internal error {type(exc).__name__} at {where} (set FRAUDSLM_DEBUG=1 for details)", 1)

    return wrapper


def _need(path: Path, what: str, hint: str) -> None:
    """A missing input folder/file is a usage error (exit 2, "not found"), never mistaken for a failed gate."""
    if not path.exists():
        from pipeline.errors import ConfigError

        raise ConfigError(f"{path}: {what} not found ({hint})")


def _get(m, *keys, default=None):
    """m[k1][k2]... for a metrics dict or pydantic model; `default` when any level is missing."""
    cur = m
    for k in keys:
        if hasattr(cur, "model_dump") and not isinstance(cur, dict):
            cur = cur.model_dump()
        if isinstance(cur, dict) and k in cur:
            cur = cur[k]
        elif isinstance(k, int) and isinstance(cur, list) and -len(cur) <= k < len(cur):
            cur = cur[k]
        else:
            return default
    return cur


def _fmt(x, nd: int = 3) -> str:
    return "?" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _say(line: str) -> None:
    """The stage's one summary line (stderr, so stdout stays free for data)."""
    typer.echo(line, err=True)


def _params(path: Path, sets: Optional[list[str]] = None):
    import yaml

    from pipeline.config import load_params
    from pipeline.errors import ConfigError

    overrides = {}
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v)
    return load_params(path, overrides)


@app.command("demo-data")
@guarded
def demo_data(
    out: Path = typer.Option(Path("data/01_raw"), "--out", help="folder for the generated sources"),
    truth: Optional[Path] = typer.Option(None, "--truth", help="ground-truth folder (default: <out>/../ground_truth)"),
    n: Optional[int] = typer.Option(None, "--n", help="number of source records (default: demo.n)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (default: seed)"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Generate the embedded sample sources with known ground truth."""
    from pipeline.demo import generate

    p = _params(params, sets)
    manifest = generate(
        out=out,
        truth_out=truth or out.parent / "ground_truth",
        n=n or p.demo.n,
        seed=p.seed if seed is None else seed,
        params=p.demo,
    )
    typer.echo(f"wrote {manifest['n_records']} records to {out}", err=True)


@app.command()
@guarded
def ingest(
    sources: Path = typer.Option(Path("schemas/sources.yaml"), "--sources", help="source config"),
    out: Path = typer.Option(Path("data/02_ingested"), "--out"),
    ground_truth: Optional[Path] = typer.Option(
        None, "--ground-truth", help="demo ground truth to score against (default: paths.ground_truth; null = none)"
    ),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Read every source into the validated record table; quarantine bad rows; deduplicate."""
    from pipeline.ingest import run_ingest

    m = run_ingest(sources=sources, out=out, params=_params(params, sets), ground_truth=ground_truth)
    t = m["totals"]
    typer.echo(
        f"ingest: read {t['read']}, accepted {t['accepted']}, quarantined {t['quarantined']}, "
        f"duplicates {t['duplicates']} -> {out}",
        err=True,
    )


@app.command()
@guarded
def anonymize(
    inp: Path = typer.Option(Path("data/02_ingested"), "--in"),
    out: Path = typer.Option(Path("data/03_anonymized"), "--out"),
    ground_truth: Optional[Path] = typer.Option(
        None, "--ground-truth", help="demo ground truth: canaries checked by the gate (default: paths.ground_truth; "
        "null = none)"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Detect and replace PII (Presidio + finance recognizers), then run the leakage gate."""
    from pipeline.anonymize import run_anonymize
    from pipeline.config import ground_truth_dir

    _need(inp, "input folder", "run `fraudslm ingest` first, or pass --in")
    p = _params(params, sets)
    m = run_anonymize(inp=inp, out=out, params=p, ground_truth=ground_truth or ground_truth_dir(p))
    _say(f"anonymize: {_get(m, 'records_out', default='?')} of {_get(m, 'records_in', default='?')} records out, "
         f"{_get(m, 'quarantined', default='?')} quarantined, {_get(m, 'entities', 'total', default='?')} PII "
         f"entities replaced, leakage gate {'passed' if _get(m, 'gate', 'passed') else 'FAILED'} -> {out}")


@app.command("detect-pii")
@guarded
def detect_pii_cmd(
    inp: Path = typer.Option(..., "--in", help='JSONL of {"id","text"}'),
    out: Path = typer.Option(..., "--out", help='JSONL of {"id","entities":[{"type","start","end","score"}]}'),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Detect PII spans in texts (evaluation interface)."""
    from pipeline.anonymize import detect_pii_file

    detect_pii_file(inp=inp, out=out, params=_params(params, sets))


@app.command("train-pii")
@guarded
def train_pii_cmd(
    out: Optional[Path] = typer.Option(None, "--out", help="model folder (default: anonymize.pii_model)"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Train the learned PII NER on the project's generated data (offline, seeded); saves model + model card."""
    from pipeline.anonymize.learned.train import train_pii
    from pipeline.errors import ConfigError

    p = _params(params, sets)
    target = out or (Path(p.anonymize.pii_model) if p.anonymize.pii_model else None)
    if target is None:
        raise ConfigError("anonymize.pii_model is null: pass --out DIR")
    rec = train_pii(p.anonymize.pii_train, base_model=p.anonymize.spacy_model, out=target)
    after = rec["heldout_ner_only"]["after_learned_ner"]
    _say(f"train-pii: {rec['generator']['train_records']} texts, {rec['train_seconds']:.0f} s; held-out recall "
         + ", ".join(f"{t} {v['recall']}" for t, v in after["recall_by_type"].items())
         + f", char precision {after['char_precision']} -> {target}")


@app.command()
@guarded
def quality(
    inp: Path = typer.Option(Path("data/03_anonymized"), "--in"),
    out: Path = typer.Option(Path("data/04_quality"), "--out"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Label noise (cleanlab, out-of-fold), outliers, imbalance, shortcut check, reviewer queue."""
    from pipeline.quality import run_quality

    _need(inp, "input folder", "run `fraudslm anonymize` first, or pass --in")
    m = run_quality(inp=inp, out=out, params=_params(params, sets))
    _say(f"quality: {_get(m, 'records', default='?')} records, {_get(m, 'label_issues', 'count', default='?')} label "
         f"issues, {_get(m, 'review_queue', default='?')} in the review queue (policy {_get(m, 'policy', default='?')})"
         f" -> {out}")


@app.command()
@guarded
def split(
    inp: Path = typer.Option(Path("data/04_quality"), "--in"),
    out: Path = typer.Option(Path("data/05_splits"), "--out"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Grouped, leakage-free train/validation/test splits; rebalance train; DatasetDict hand-off."""
    from pipeline.split import run_split

    _need(inp, "input folder", "run `fraudslm quality` first, or pass --in")
    m = run_split(inp=inp, out=out, params=_params(params, sets))
    sizes = _get(m, "sizes", default={}) or {}
    _say(f"split: train {sizes.get('train', '?')}, validation {sizes.get('validation', '?')}, test "
         f"{sizes.get('test', '?')} records (rebalance {_get(m, 'rebalance', 'method', default='?')}, group overlap "
         f"{_get(m, 'group_overlap_total', default='?')}) -> {out}")


@app.command()
@guarded
def train(
    inp: Path = typer.Option(Path("data/05_splits"), "--in"),
    out: Path = typer.Option(Path("data/06_models/lora"), "--out"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """LoRA fine-tune of the base SLM on the anonymized splits."""
    from pipeline.train import run_train

    _need(inp, "input folder", "run `fraudslm split` first, or pass --in")
    m = run_train(inp=inp, out=out, params=_params(params, sets))
    _say(f"train: test PR-AUC {_fmt(_get(m, 'test_pr_auc'))}, validation PR-AUC {_fmt(_get(m, 'val_pr_auc'))} "
         f"(best epoch {_get(m, 'best_epoch', default='?')} of {_get(m, 'epochs_run', default='?')}) -> {out}")


@app.command()
@guarded
def compress(
    inp: Path = typer.Option(Path("data/06_models/lora"), "--in"),
    splits: Path = typer.Option(Path("data/05_splits"), "--splits"),
    out: Path = typer.Option(Path("data/06_models/compressed"), "--out"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Quantize, prune, distill and export to ONNX; size/latency/accuracy table."""
    from pipeline.train.compress import run_compress

    _need(inp, "model folder", "run `fraudslm train` first, or pass --in")
    _need(splits, "splits folder", "run `fraudslm split` first, or pass --splits")
    m = run_compress(inp=inp, splits=splits, out=out, params=_params(params, sets))
    chosen = _get(m, "chosen")
    variants = _get(m, "variants", default=[]) or []
    row = (variants.get(chosen) if isinstance(variants, dict)
           else next((v for v in variants if _get(v, "name") == chosen), None)) or {}
    floor = _get(m, "chosen_rule", "floor_met")
    _say(f"compress: chose {chosen or '?'} ({_fmt(_get(row, 'size_mb'), 1)} MB, test PR-AUC "
         f"{_fmt(_get(row, 'pr_auc'))}; baseline floor {'met' if floor else 'NOT met' if floor is False else '?'})"
         f" -> {out / 'chosen'}")


@app.command()
@guarded
def predict(
    model: Path = typer.Option(Path("data/06_models/compressed/chosen"), "--model",
                               help="shipped model folder (or the compress output holding it in chosen/)"),
    inp: Path = typer.Option(..., "--in", help='JSONL of {"id","text"} (raw text); - for standard input'),
    out: Path = typer.Option(..., "--out", help='JSONL of {"id","score","label","route"} (no text); - for standard '
                             'output'),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Anonymize raw texts as the pipeline does and score them with a shipped model (threshold + router)."""
    from pipeline.predict import run_predict

    _need(model, "model folder", "run `fraudslm compress` first, or pass --model")
    from pipeline.config import load_params

    # outside a project folder (no params.yaml) the predict defaults apply; the anonymizer comes from the model
    run_predict(model=model, inp=inp, out=out, params=_params(params, sets) if params.exists() else load_params(None))


@app.command()
@guarded
def report(
    out: Path = typer.Option(Path("data/reports"), "--out"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Render the self-contained audit report (HTML + JSON) and its signed manifest."""
    from pipeline.report import run_report

    res = run_report(out=out, params=_params(params, sets))
    typer.echo(f"report {res['overall'].upper()}: {res['out']} ({res['files']} file(s) in the manifest, "
               f"{'signed' if res['signed'] else 'unsigned'}; not run: {', '.join(res['sections_not_run']) or 'none'})",
               err=True)


@app.command("verify-report")
@guarded
def verify_report_cmd(
    report_dir: Path = typer.Argument(Path("data/reports"), help="report folder holding manifest.json"),
    public_key: Optional[str] = typer.Option(
        None, "--public-key", help="expected signer: Ed25519 public key (PEM, base64 raw, or a file); "
        "default: FRAUDSLM_REPORT_PUBLIC_KEY"),
) -> None:
    """Check the report's SHA-256 manifest (and signature when a public key is configured)."""
    from pipeline.report import verify_report

    typer.echo(verify_report(report_dir, public_key=public_key).summary())


@app.command()
@guarded
def diff(
    rev_a: str = typer.Argument(..., help="git revision / tag of the older dataset version"),
    rev_b: str = typer.Argument("HEAD", help="git revision / tag of the newer dataset version"),
    params: Path = ParamsOpt,
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """What changed between two dataset versions (counts, prevalence, sources, entity counts)."""
    from pipeline.versions import diff_versions

    diff_versions(rev_a, rev_b, params_path=params, as_json=as_json)


@app.command()
@guarded
def serve() -> None:
    """Serve the Prefect deployments (scheduled pipeline and ingest watcher)."""
    from flows.deployments import serve_all

    serve_all()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
