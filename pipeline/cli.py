"""`fraudslm` command line: parse arguments, load params, call the stage function. No logic lives here."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

import typer

from pipeline.errors import FraudSLMError

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
        None, "--ground-truth", help="demo ground truth to score against (default: paths.ground_truth if present)"
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
    ground_truth: Optional[Path] = typer.Option(None, "--ground-truth", help="demo ground truth: canaries checked by the gate"),
    params: Path = ParamsOpt,
    sets: Optional[list[str]] = SetOpt,
) -> None:
    """Detect and replace PII (Presidio + finance recognizers), then run the leakage gate."""
    from pipeline.anonymize import run_anonymize

    run_anonymize(inp=inp, out=out, params=_params(params, sets), ground_truth=ground_truth)


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

    run_quality(inp=inp, out=out, params=_params(params, sets))


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

    run_split(inp=inp, out=out, params=_params(params, sets))


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

    run_train(inp=inp, out=out, params=_params(params, sets))


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

    run_compress(inp=inp, splits=splits, out=out, params=_params(params, sets))


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
