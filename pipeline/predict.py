"""`fraudslm predict`: score new raw texts with a shipped model folder (`<compress out>/chosen`).

    from pipeline.predict import load
    model = load("data/06_models/compressed/chosen")
    model.predict(["raw text ..."])   # [{"score": 0.93, "label": "fraud", "route": "review"}, ...]

Each text goes through what the training data went through: the anonymize stage's detector, operators and key
(`FRAUDSLM_PSEUDONYM_KEY`; when it is not set, a one-off random key, which gives the same scores because the model
sees placeholder types only and no pseudonym is written), with the anonymize settings shipped in the folder's
`variant.json` (`pipeline.anonymize.text_api`), then the placeholder reduction training used, then the variant's
scorer. `label` applies the folder's threshold; `route` is `auto` when the score lies outside the review band chosen
on validation (`predict.target_precision`), `review` inside it, and `error` when the text could not be anonymized
safely: such a text is never scored (fail closed) and its row carries no score.

Output rows hold `id`, `score`, `label`, `route` (and `error` for a quarantined text): never the text. For an
ONNX or TF-IDF variant nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from pipeline.anonymize.pseudonym import KEY_ENV
from pipeline.errors import ConfigError
from pipeline.io import atomic_path
from pipeline.train.predict import TORCH_KINDS, VARIANT_FILE, load_variant, read_variant_meta
from pipeline.train.resources import resolve_threads
from pipeline.train.textproc import PLACEHOLDER_HANDLING

ROUTES = ("auto", "review", "error")


class FraudModel:
    """A shipped variant folder, ready to score raw texts (see the module doc)."""

    def __init__(self, folder: str | Path, threads: int | str = "auto", batch_size: int = 256,
                 key: Optional[bytes] = None) -> None:
        from pipeline.anonymize.text_api import TextAnonymizer, settings_digest
        from pipeline.config import AnonymizeParams

        self.folder = model_folder(folder)
        meta = read_variant_meta(self.folder)
        where = self.folder / "variant.json"
        missing = [k for k in ("threshold", "anonymizer", "labels", "placeholder_handling") if k not in meta]
        if missing:
            raise ConfigError(f"{where}: lacks {', '.join(missing)}; not a shipped model (use the `chosen/` folder "
                              "written by `fraudslm compress`)")
        if meta["placeholder_handling"] != PLACEHOLDER_HANDLING:
            raise ConfigError(f"{where}: placeholder handling {meta['placeholder_handling']!r} is not supported by "
                              f"this fraudslm ({PLACEHOLDER_HANDLING!r})")
        self.meta = meta
        self.kind = meta.get("kind")
        self.threshold = float(meta["threshold"])
        self.router = meta.get("router") or {}
        self.labels = {int(k): v for k, v in meta["labels"].items()}
        self.batch_size = int(batch_size)
        try:
            anon = AnonymizeParams.model_validate(meta["anonymizer"]["settings"])
        except Exception as exc:  # noqa: BLE001 - pydantic error, one line
            raise ConfigError(f"{where}: anonymizer.settings invalid ({type(exc).__name__})") from None
        now = settings_digest(anon)
        if now["registry_sha256"] != meta["anonymizer"].get("registry_sha256"):
            _warn(f"{anon.registry}: recognizer registry differs from the one the model was trained with; "
                  "detection may differ")
        trained_model = meta["anonymizer"].get("pii_model_sha256")
        if trained_model and now["pii_model_sha256"] != trained_model:
            _warn(f"{anon.pii_model}: learned PII model differs from the one the training data was anonymized with "
                  f"(sha256 {trained_model[:12]}); detection may differ")
        one_off = key is None and not os.environ.get(KEY_ENV, "").strip()
        if one_off:
            # No pseudonym reaches the output and the model sees placeholder types only, so the secret key is not
            # needed to score: a scoring box (edge, laptop) need not hold it. A set but invalid key is still an error.
            key = secrets.token_bytes(32)
            _warn(f"{KEY_ENV} is not set: texts are pseudonymized with a one-off key. Scores are the same (the model "
                  "sees placeholder types only) and no pseudonym is written")
        self.anonymizer = TextAnonymizer(anon, key, without_torch=self.kind not in TORCH_KINDS)
        del key
        self.one_off_key = one_off
        trained_fp = meta["anonymizer"].get("key_fingerprint")
        if trained_fp and not one_off and trained_fp != self.anonymizer.key_fingerprint:
            _warn("FRAUDSLM_PSEUDONYM_KEY differs from the key the training data was anonymized with (fingerprint "
                  f"{trained_fp}); scores are unaffected (placeholders are reduced to their type) but pseudonyms "
                  "will not join with the training data")
        self.scorer = load_variant(self.folder, threads=resolve_threads(threads))

    # ------------------------------------------------------------------------------------------------ scoring

    def route(self, scores: np.ndarray) -> list[str]:
        low = self.router.get("low")
        high = self.router.get("high")
        lo = -np.inf if low is None else float(low)
        hi = np.inf if high is None else float(high)
        return ["auto" if (s >= hi or s < lo) else "review" for s in scores]

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One dict per text, in order: {"score", "label", "route"} (+ "error" when the text was quarantined)."""
        out: list[dict[str, Any]] = []
        for j in range(0, len(texts), self.batch_size):
            out.extend(self._predict_batch(list(texts[j: j + self.batch_size])))
        return out

    def _predict_batch(self, texts: list[str]) -> list[dict[str, Any]]:
        rows: list[Optional[dict[str, Any]]] = [None] * len(texts)
        todo: list[int] = []
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                rows[i] = {"score": None, "label": None, "route": "error", "error": "empty_text"}
            else:
                todo.append(i)
        anon = self.anonymizer.anonymize([texts[i] for i in todo]) if todo else []
        ok: list[int] = []
        clean: list[str] = []
        for i, (new, reason) in zip(todo, anon):
            if new is None:
                rows[i] = {"score": None, "label": None, "route": "error", "error": reason or "anonymize_failed"}
            else:
                ok.append(i)
                clean.append(new)
        if clean:
            p = np.asarray(self.scorer.predict_proba(clean), dtype=np.float64)
            routes = self.route(p)
            for i, s, r in zip(ok, p, routes):
                rows[i] = {"score": round(float(s), 6), "label": self.labels[int(s >= self.threshold)], "route": r}
        return rows  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------------- files

    def predict_file(self, inp: str | Path, out: str | Path, progress: bool = True) -> dict[str, Any]:
        """Stream `inp` ({"id", "text"} per line) into `out` ({"id", "score", "label", "route"} per line), batch by
        batch; a file is written atomically, `-` is standard input / output (flushed batch by batch). A bad line gets
        one stderr line naming file:line and the problem; the rest goes through. Returns counts."""
        from tqdm import tqdm

        inp, out = Path(inp), Path(out)
        check_input(inp)
        t0 = time.perf_counter()
        counts = {"lines": 0, "bad_lines": 0, "scored": 0, "errors": 0, "auto": 0, "review": 0, "fraud": 0}
        bar = tqdm(desc="predict", unit="text", file=sys.stderr, disable=None if progress else True, mininterval=2.0)
        with contextlib.ExitStack() as stack:
            if str(out) == STDIO:
                fh = sys.stdout
            else:
                fh = stack.enter_context(open(stack.enter_context(atomic_path(out)), "w", encoding="utf-8"))
            for batch in _batches(_read_rows(inp, counts), self.batch_size):
                results = self._predict_batch([t for _, t in batch])
                for (rid, _), res in zip(batch, results):
                    fh.write(json.dumps({"id": rid, **res}, ensure_ascii=False) + "\n")
                    if res["route"] == "error":
                        counts["errors"] += 1
                    else:
                        counts["scored"] += 1
                        counts[res["route"]] += 1
                        counts["fraud"] += int(res["label"] == self.labels[1])
                bar.update(len(batch))
                fh.flush()
        bar.close()
        counts["seconds"] = round(time.perf_counter() - t0, 2)
        return counts


STDIO = "-"


def model_folder(folder: str | Path) -> Path:
    """The variant folder to load: `folder` itself, or its `chosen/` when `folder` is a `fraudslm compress` output
    (`data/06_models/compressed`), so both spellings score with the shipped variant."""
    folder = Path(folder)
    if not (folder / VARIANT_FILE).is_file() and (folder / "chosen" / VARIANT_FILE).is_file():
        return folder / "chosen"
    return folder


def check_input(inp: Path) -> None:
    """Fail before the model loads when the input file is missing (`-` is standard input)."""
    if str(inp) != STDIO and not Path(inp).is_file():
        raise ConfigError(f"{inp}: input file not found")


def _warn(msg: str) -> None:
    print(f"fraudslm predict: warning: {msg}", file=sys.stderr)


def _read_rows(path: Path, counts: dict[str, int]) -> Iterator[tuple[Any, str]]:
    """(id, text) per good line; bad lines are reported (file:line: problem, never their content) and skipped."""
    stdin = str(path) == STDIO
    name = "<stdin>" if stdin else str(path)
    with contextlib.nullcontext(sys.stdin.buffer) if stdin else open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            counts["lines"] += 1
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problem = "not valid UTF-8"
            else:
                if not line.strip():
                    counts["lines"] -= 1
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    problem = f"invalid JSON ({exc.msg} at column {exc.colno})"
                else:
                    if not isinstance(row, dict):
                        problem = f"expected a JSON object, found {type(row).__name__}"
                    elif "id" not in row or not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
                        problem = "missing or non-scalar 'id'"
                    elif not isinstance(row.get("text"), str):
                        problem = "missing 'text' or not a string"
            if problem:
                counts["bad_lines"] += 1
                print(f"fraudslm predict: {name}:{n}: {problem}; line skipped", file=sys.stderr)
                continue
            yield row["id"], row["text"]


def _batches(rows: Iterable[tuple[Any, str]], size: int) -> Iterator[list[tuple[Any, str]]]:
    batch: list[tuple[Any, str]] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load(folder: str | Path, threads: int | str = "auto", batch_size: int = 256,
         key: Optional[bytes] = None) -> FraudModel:
    """The shipped model in `folder` (a `fraudslm compress` output's `chosen/`), ready for `.predict(texts)`."""
    return FraudModel(folder, threads=threads, batch_size=batch_size, key=key)


def run_predict(model: Path, inp: Path, out: Path, params) -> dict[str, Any]:
    """CLI entry: `fraudslm predict --model DIR --in texts.jsonl --out scores.jsonl`."""
    pp = params.predict
    check_input(Path(inp))
    m = load(model, threads=pp.threads, batch_size=pp.batch_size)
    counts = m.predict_file(inp, out)
    print(f"fraudslm predict: {counts['scored']} scored ({counts['auto']} auto, {counts['review']} review, "
          f"{counts['fraud']} labelled fraud), {counts['errors']} quarantined, {counts['bad_lines']} bad line(s) "
          f"-> {'standard output' if str(out) == STDIO else out}", file=sys.stderr)
    return counts
