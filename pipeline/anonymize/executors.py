"""Detection executors of the anonymize stage: the worker-side job (one detector per process) and the three ways
to run it (in-process, a local process pool, a Dask cluster). Workers get texts and return spans (positions, types,
scores) only, never values; a text whose analysis throws is retried alone and, failing again, reported by the type
of its exception only."""

from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pipeline.errors import ConfigError, FraudSLMError

SpanT = tuple[str, int, int, float, str]  # type, start, end, score, recognizer
DetectorFactory = Callable[[Any], Any]

__all__ = ["SpanT", "DetectorFactory", "Job", "JobResult", "detect_job", "make_executor", "get_detector"]


# ====================================================================================== worker side


def _default_factory(cfg):
    from pipeline.anonymize.detect import build_detector

    return build_detector(cfg)


_DETECTORS: dict[str, Any] = {}  # per process: (params, factory) -> detector or the exception building it raised

# glibc mallopt parameters (malloc.h) and the values set for a detecting process
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 64 << 20, 256 << 20
_MALLOC_TUNED = False


def tune_malloc() -> bool:
    """Let glibc keep freed heap memory for the next batch instead of handing it back to the kernel after each one.

    The NER's layers allocate and free arrays of a few MB per batch. With glibc's defaults, blocks that large are
    served by fresh `mmap`s (or trimmed off the heap top when freed), so every batch pays the kernel again to map and
    zero the same pages: about 1 s of system time per 2,000 texts, a tenth of the CPU time of detection. Raising
    `M_MMAP_THRESHOLD` to 64 MB and `M_TRIM_THRESHOLD` to 256 MB keeps those blocks on the heap for reuse; the
    detected spans are unchanged and peak memory was the same in the measurement (docs/benchmarks.md).

    Applied once per process that builds a detector, and inherited by the workers it forks. Skipped off Linux,
    without glibc's `mallopt`, or when the environment sets either `MALLOC_MMAP_THRESHOLD_` or
    `MALLOC_TRIM_THRESHOLD_` itself (the user's choice wins). Returns whether the settings were applied."""
    import ctypes
    import os
    import sys

    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if not sys.platform.startswith("linux") or any(
            os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _MALLOC_TUNED = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _MALLOC_TUNED


def _detector(cfg_json: str, factory: Optional[DetectorFactory]):
    from pipeline.config import AnonymizeParams

    fac = factory or _default_factory
    key = f"{getattr(fac, '__module__', '')}.{getattr(fac, '__qualname__', repr(fac))}|{cfg_json}"
    det = _DETECTORS.get(key)
    if det is None:
        tune_malloc()
        try:
            det = fac(AnonymizeParams.model_validate_json(cfg_json))
        except FraudSLMError as exc:
            det = exc
        except Exception as exc:  # noqa: BLE001 - reported without its message (could hold a value)
            det = ConfigError(f"cannot build the PII detector ({type(exc).__name__})")
        _DETECTORS[key] = det
    if isinstance(det, Exception):
        raise det
    return det


def _init_worker(cfg_json: str, factory: Optional[DetectorFactory]) -> None:
    """Process-pool initializer: build the detector once (a failure is kept and raised by the first job)."""
    try:
        _detector(cfg_json, factory)
    except FraudSLMError:
        pass


def _valid(spans, text: str) -> list[SpanT]:
    out = []
    n = len(text)
    for s in spans:
        start, end = int(s.start), int(s.end)
        if not (0 <= start < end <= n):
            raise ValueError("span outside its text")
        out.append((str(s.type), start, end, float(s.score), str(s.recognizer)))
    return out


def _detect_group(det, texts: list[str], ner: bool) -> tuple[list[Optional[list[SpanT]]], dict[int, str]]:
    """Spans per text; a text whose analysis throws (even alone) gets None and a reason (exception type only)."""
    if not texts:
        return [], {}
    try:
        res = det.detect_batch(texts, ner=ner)
        if len(res) != len(texts):
            raise ValueError("detector returned a wrong number of results")
        return [_valid(r, t) for r, t in zip(res, texts)], {}
    except FraudSLMError:
        raise
    except Exception:  # noqa: BLE001 - isolate the failing text(s) below
        pass
    out: list[Optional[list[SpanT]]] = []
    errors: dict[int, str] = {}
    for i, t in enumerate(texts):
        try:
            out.append(_valid(det.detect_batch([t], ner=ner)[0], t))
        except FraudSLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: the record is quarantined, the message dropped
            out.append(None)
            errors[i] = f"detect_failed:{type(exc).__name__}"
    return out, errors


def detect_job(job: "_Job", cfg_json: str, factory: Optional[DetectorFactory]) -> "_JobResult":
    """Runs in a worker: detection for one partition's distinct texts. Returns positions only, never values."""
    det = _detector(cfg_json, factory)
    ner_spans, ner_err = _detect_group(det, job.ner_texts, True)
    pat_spans, pat_err = _detect_group(det, job.pattern_texts, False)
    return _JobResult(job.index, ner_spans, ner_err, pat_spans, pat_err)


@dataclass
class _Job:
    index: int
    ner_texts: list[str]
    pattern_texts: list[str]


@dataclass
class _JobResult:
    index: int
    ner_spans: list[Optional[list[SpanT]]]
    ner_errors: dict[int, str]
    pattern_spans: list[Optional[list[SpanT]]]
    pattern_errors: dict[int, str]


# ===================================================================================== executors


class _Done:
    def __init__(self, value=None, exc: Optional[BaseException] = None) -> None:
        self._value, self._exc = value, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._value


class _InProcess:
    name = "in-process"

    def __init__(self, cfg_json: str, factory) -> None:
        self.cfg_json, self.factory = cfg_json, factory
        self.slots = 1

    def submit(self, job: _Job):
        try:
            return _Done(detect_job(job, self.cfg_json, self.factory))
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            return _Done(exc=exc)

    def close(self) -> None:
        pass


def _start_method() -> str:
    """fork when it is safe (Linux, this process runs a single thread): workers start at once and inherit a detector
    this process already built; spawn otherwise (threads + fork can deadlock)."""
    import sys
    import threading

    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _ProcessPool:
    name = "local-pool"

    def __init__(self, cfg_json: str, factory, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.cfg_json, self.factory = cfg_json, factory
        self.slots = 2 * workers
        method = _start_method()
        if method == "fork":
            # build (or reuse) the detector here once: forked workers inherit it instead of importing and loading
            # the model each; fall back to spawn if building it started a thread
            _detector(cfg_json, factory)
            method = _start_method()
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(cfg_json, factory),
        )

    def submit(self, job: _Job):
        return self.pool.submit(detect_job, job, self.cfg_json, self.factory)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    name = "dask"

    def __init__(self, cfg_json: str, factory, workers: int, address: Optional[str]) -> None:
        from dask.distributed import Client, LocalCluster

        self.cfg_json, self.factory = cfg_json, factory
        self.cluster = None
        try:
            if address:
                self.client = Client(address, timeout="30s")
            else:
                self.cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # loopback, any free port
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            if self.cluster is not None:
                self.cluster.close()
            what = type(exc).__name__
            raise ConfigError(f"anonymize.dask_address: cannot reach the Dask scheduler ({what})") from None
        n = len(self.client.scheduler_info().get("workers", {})) or workers
        self.slots = 2 * n

    def submit(self, job: _Job):
        return self.client.submit(detect_job, job, self.cfg_json, self.factory, pure=False)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _make_executor(cfg, cfg_json: str, factory, n_partitions: int):
    if cfg.executor == "dask":
        return _Dask(cfg_json, factory, cfg.workers, cfg.dask_address)
    if cfg.workers <= 1 or n_partitions <= 1:
        return _InProcess(cfg_json, factory)
    return _ProcessPool(cfg_json, factory, min(cfg.workers, n_partitions))


# public names (the underscored ones stay for callers of the former stage module)
Job, JobResult, make_executor, get_detector = _Job, _JobResult, _make_executor, _detector
