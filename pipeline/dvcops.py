"""Thin helpers around `dvc` and `git`: stage order, repro of one stage, add/push/pull, params overrides, commit and
tag. No stage logic: DVC owns the DAG, these functions only ask it and call it.

Every subprocess runs with the interpreter's bin folder first on PATH (so `fraudslm` in dvc.yaml resolves to this
installation) and with DVC's analytics off. Output of the stage commands is captured, never logged: only stage names,
exit codes and timings leave this module (stage errors are the CLI's one-line, PII-free messages).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from pipeline.errors import ConfigError, FraudSLMError

RESTRICTED_REMOTE = "restricted"
SHARED_REMOTE = "shared"
# Stage exit codes that retrying cannot fix: 1 = a gate failed, 2 = usage/config error (DESIGN.md).
PERMANENT_EXIT_CODES = frozenset({1, 2})


class StageFailed(FraudSLMError):
    """`dvc repro` of one stage failed. `exit_code` mirrors the stage's own exit code when known."""

    def __init__(self, stage: str, stage_exit_code: Optional[int], detail: str) -> None:
        self.stage = stage
        self.stage_exit_code = stage_exit_code
        self.detail = detail
        self.exit_code = stage_exit_code if stage_exit_code in PERMANENT_EXIT_CODES else 1
        super().__init__(f"stage {stage!r} failed (exit {stage_exit_code}): {detail}")

    @property
    def transient(self) -> bool:
        """A crash, a kill or a lock is worth a retry; a failed gate or a bad config is not."""
        return self.stage_exit_code not in PERMANENT_EXIT_CODES


@dataclass(frozen=True)
class StageRun:
    stage: str
    status: str  # ran | skipped | restored (from DVC's run cache)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# subprocess plumbing


def tool_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if extra:
        env.update(extra)
    return env


def run_dvc(
    args: list[str], repo: str | Path = ".", env: Optional[Mapping[str, str]] = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run `dvc ARGS` in `repo` (the installed dvc, via this interpreter) and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=str(repo),
        env=tool_env(env),
        capture_output=True,
        text=True,
        errors="replace",
    )
    if check and proc.returncode != 0:
        raise ConfigError(f"dvc {' '.join(args[:2])} failed in {repo}: {_error_line(proc)}")
    return proc


def _error_line(proc: subprocess.CompletedProcess) -> str:
    """The most useful single line of a failed run: the CLI's own `fraudslm: ...` line, else DVC's ERROR line."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    for prefix in ("fraudslm:", "ERROR:"):
        hits = [ln for ln in lines if ln.startswith(prefix)]
        if hits:
            return hits[-1][:500]
    return (lines[-1] if lines else f"exit {proc.returncode}")[:500]


def _git_env() -> dict[str, str]:
    """Commit identity for unattended runs, used only when git has none configured."""
    env = tool_env()
    probe = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True, env=env)
    if not probe.stdout.strip():
        env.setdefault("GIT_AUTHOR_NAME", "fraudslm pipeline")
        env.setdefault("GIT_AUTHOR_EMAIL", "pipeline@fraudslm.invalid")
        env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
        env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def git(args: list[str], repo: str | Path = ".", check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=str(repo), env=_git_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise ConfigError(f"git {args[0]} failed in {repo}: {msg[:300]}")
    return proc


# ---------------------------------------------------------------------------------------------------------------
# the DAG, as DVC sees it


def stage_order(repo: str | Path = ".") -> list[str]:
    """Pipeline stages of `repo` in an order DVC can run them (dependencies first; ties in dvc.yaml order)."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(repo)) as r:
        graph = r.index.graph  # edges: stage -> stage it depends on
        stages = [s for s in graph.nodes if isinstance(s, PipelineStage)]
        position = {s: i for i, s in enumerate(r.index.stages)}
        sub = graph.subgraph(stages).reverse(copy=True)
        ordered = nx.lexicographical_topological_sort(sub, key=lambda s: f"{position.get(s, 0):06d}")
        root = Path(r.root_dir).resolve()
        return [_address(s, root) for s in ordered]


def _address(stage, root: Path) -> str:
    """A stage's name as `dvc repro` takes it from the repository root (`name`, or `sub/dvc.yaml:name`)."""
    rel = Path(stage.dvcfile.path).resolve().relative_to(root)
    return stage.name if str(rel) == "dvc.yaml" else f"{rel}:{stage.name}"


def metrics_files(repo: str | Path = ".") -> dict[str, list[str]]:
    """{stage: [metrics file paths relative to the repo]} as declared in dvc.yaml."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    result: dict[str, list[str]] = {}
    with Repo(str(repo)) as r:
        root = Path(r.root_dir).resolve()
        for stage in r.index.stages:
            if isinstance(stage, PipelineStage):
                result[_address(stage, root)] = sorted(
                    str(Path(o.fs_path).resolve().relative_to(root)) for o in stage.outs if o.metric
                )
    return result


def select_stages(order: list[str], stages: Optional[Iterable[str]] = None, until: Optional[str] = None) -> list[str]:
    """Filter the DVC order: an explicit subset (kept in DVC order) and/or everything up to `until` inclusive."""
    chosen = list(order)
    if until is not None:
        if until not in order:
            raise ConfigError(f"until={until!r}: not a stage of dvc.yaml ({', '.join(order)})")
        chosen = order[: order.index(until) + 1]
    if stages is not None:
        wanted = list(stages)
        unknown = sorted(set(wanted) - set(order))
        if unknown:
            raise ConfigError(f"stages: unknown stage(s) {', '.join(unknown)} ({', '.join(order)})")
        chosen = [s for s in chosen if s in wanted]
    return chosen


_EXITED = re.compile(r"exited with (-?\d+)")


def repro_stage(
    stage: str, repo: str | Path = ".", env: Optional[Mapping[str, str]] = None, force: bool = False
) -> StageRun:
    """`dvc repro --single-item STAGE`: runs the stage if its deps, params or outs changed, else skips it."""
    args = ["repro", "--single-item", stage] + (["--force"] if force else [])
    t0 = time.perf_counter()
    proc = run_dvc(args, repo, env=env, check=False)
    seconds = round(time.perf_counter() - t0, 3)
    text = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0:
        m = _EXITED.findall(text)
        raise StageFailed(stage, int(m[-1]) if m else None, _error_line(proc))
    if f"Running stage '{stage}'" in text:
        status = "ran"
    elif "is cached - skipping run" in text:
        status = "restored"
    else:
        status = "skipped"
    return StageRun(stage=stage, status=status, seconds=seconds)


def status(repo: str | Path = ".", targets: Optional[list[str]] = None) -> dict[str, Any]:
    """`dvc status --json`: {} when every stage is up to date."""
    proc = run_dvc(["status", "--json", *(targets or [])], repo)
    out = proc.stdout.strip()
    return json.loads(out) if out else {}


# ---------------------------------------------------------------------------------------------------------------
# data: add / push / pull


def add(paths: Iterable[str | Path], repo: str | Path = ".", remote: str = RESTRICTED_REMOTE) -> list[Path]:
    """`dvc add` input folders (sources, ground truth) and pin them to `remote` in their .dvc files."""
    paths = [str(p) for p in paths]
    run_dvc(["add", "--quiet", *paths], repo)
    dvc_files = [Path(repo) / f"{p.rstrip('/')}.dvc" for p in paths]
    for f in dvc_files:
        set_dvcfile_remote(f, remote)
    return dvc_files


def set_dvcfile_remote(dvc_file: str | Path, remote: str) -> None:
    """Write `remote:` into each out of a .dvc file (`dvc add` keeps the field on later re-adds)."""
    from ruamel.yaml import YAML

    from pipeline.io import atomic_path

    yaml = YAML()
    path = Path(dvc_file)
    data = yaml.load(path.read_text(encoding="utf-8"))
    changed = False
    for out in data.get("outs", []):
        if out.get("remote") != remote:
            out["remote"] = remote
            changed = True
    if changed:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.dump(data, fh)


def push(repo: str | Path = ".", targets: Optional[list[str]] = None, remote: Optional[str] = None) -> None:
    """`dvc push`: every output goes to its own `remote:` (restricted by default, shared where declared)."""
    run_dvc(["push", "--quiet", *(["--remote", remote] if remote else []), *(targets or [])], repo)


def pull(repo: str | Path = ".", targets: Optional[list[str]] = None, allow_missing: bool = True) -> None:
    """`dvc pull`; with allow_missing a first run against an empty remote is not an error."""
    run_dvc(["pull", "--quiet", *(["--allow-missing"] if allow_missing else []), *(targets or [])], repo)


# ---------------------------------------------------------------------------------------------------------------
# params overrides


def apply_overrides(params_path: str | Path, overrides: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Write dotted-key overrides (e.g. {"quality.k_folds": 3}) into params.yaml.

    The result is validated against `pipeline.config.Params` first: an unknown key or a bad value raises
    ConfigError and leaves the file untouched. Existing scalar keys are edited in place (the line's comment and
    the rest of the file stay byte for byte); anything else goes through a round-trip dump (comments kept).
    Returns the keys whose value actually changed.
    """
    import yaml as pyyaml
    from ruamel.yaml import YAML

    from pipeline.config import load_params
    from pipeline.io import write_text

    overrides = dict(overrides or {})
    if not overrides:
        return {}
    path = Path(params_path)
    load_params(path, overrides)  # validate before touching the file
    text = path.read_text(encoding="utf-8")
    expected = pyyaml.safe_load(text) or {}
    changed: dict[str, Any] = {}
    for dotted, value in sorted(overrides.items()):
        keys = dotted.split(".")
        cur = expected
        for k in keys[:-1]:
            if not isinstance(cur.get(k), dict):
                cur[k] = {}
            cur = cur[k]
        if keys[-1] not in cur or cur[keys[-1]] != value:
            cur[keys[-1]] = value
            changed[dotted] = value
    if not changed:
        return {}

    rt = YAML()
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(text)
    lines = text.splitlines(keepends=True)
    for dotted, value in changed.items():
        if not _edit_line(lines, doc, dotted.split("."), value):
            break
    else:
        candidate = "".join(lines)
        if pyyaml.safe_load(candidate) == expected:
            write_text(path, candidate)
            return changed
    # fallback: structural edit + round-trip dump
    for dotted, value in changed.items():
        keys = dotted.split(".")
        cur = doc
        for k in keys[:-1]:
            if cur.get(k) is None:
                cur[k] = {}
            cur = cur[k]
        cur[keys[-1]] = value
    import io

    buf = io.StringIO()
    rt.dump(doc, buf)
    write_text(path, buf.getvalue())
    return changed


def _flow_yaml(value: Any) -> str:
    import yaml as pyyaml

    out = pyyaml.safe_dump(value, default_flow_style=True, width=4096).strip()
    return out[: -len("...")].strip() if out.endswith("...") else out


def _edit_line(lines: list[str], doc: Any, keys: list[str], value: Any) -> bool:
    """Replace the value of an existing one-line scalar key in place; False when that is not possible."""
    cur = doc
    for k in keys[:-1]:
        if not hasattr(cur, "get") or not hasattr(cur.get(k), "lc"):
            return False
        cur = cur[k]
    key = keys[-1]
    if not hasattr(cur, "lc") or key not in cur or hasattr(cur[key], "lc") or isinstance(value, (dict, list)):
        return False
    line_no, col = cur.lc.value(key)
    kline, _ = cur.lc.key(key)
    if kline != line_no or line_no >= len(lines):
        return False
    line = lines[line_no]
    body, nl = (line[:-1], "\n") if line.endswith("\n") else (line, "")
    rest = body[col:]
    m = re.match(r"^(.*?)(\s+#.*)?$", rest)
    old_text, comment = m.group(1), m.group(2) or ""
    if not old_text.strip():  # `key:` followed by a comment only (null)
        old_text, comment = "", rest
    new_text = _flow_yaml(value)
    if comment and len(new_text) < len(old_text):
        new_text = new_text.ljust(len(old_text))
    prefix = body[:col]
    if not old_text and not prefix.endswith(" "):
        prefix += " "
    lines[line_no] = prefix + new_text + (comment if comment.startswith((" ", "\t")) or not comment else " " + comment) + nl
    return True


# ---------------------------------------------------------------------------------------------------------------
# versions: dvc.lock, commit, tag


def read_lock(repo: str | Path = ".", rev: Optional[str] = None) -> dict[str, Any]:
    """dvc.lock of the workspace (rev None) or of a git revision ({} when absent)."""
    import yaml

    if rev is None:
        p = Path(repo) / "dvc.lock"
        text = p.read_text(encoding="utf-8") if p.exists() else ""
    else:
        proc = git(["show", f"{rev}:dvc.lock"], repo, check=False)
        text = proc.stdout if proc.returncode == 0 else ""
    return (yaml.safe_load(text) or {}) if text else {}


def out_hashes(lock: Mapping[str, Any], stage: str) -> dict[str, str]:
    """{path: md5} of a stage's outputs in a parsed dvc.lock."""
    outs = (lock.get("stages", {}).get(stage) or {}).get("outs", [])
    return {o["path"]: o.get("md5", "") for o in outs}


DATASET_STAGES = ("anonymize", "split")
# figures about the data, not the data: a new metrics key or another run's timings never make a new dataset version
NOT_DATA = ("metrics.json", "headline.json", "timings.json")


def dataset_hash(lock: Mapping[str, Any], stages: Iterable[str] = DATASET_STAGES) -> str:
    """Short content address of the dataset: the DVC hashes of the anonymized records and the splits (their data
    outputs; the metrics files beside them are left out)."""
    h = hashlib.sha256()
    for stage in stages:
        for path, md5 in sorted(out_hashes(lock, stage).items()):
            if Path(path).name in NOT_DATA:
                continue
            h.update(f"{path}={md5}\n".encode())
    return h.hexdigest()[:8]


def dataset_tag(lock: Mapping[str, Any], day: Optional[str] = None) -> str:
    """`data-v<YYYYMMDD>-<hash8>`: the tag name of a dataset version."""
    day = day or time.strftime("%Y%m%d", time.gmtime())
    return f"data-v{day}-{dataset_hash(lock)}"


def git_commit(repo: str | Path, paths: Iterable[str | Path], message: str) -> Optional[str]:
    """Commit the given paths (dvc.lock, .dvc files, metrics.json, params.yaml); None when nothing changed."""
    existing = [str(p) for p in paths if (Path(repo) / p).exists()]
    if not existing:
        return None
    git(["add", "--", *existing], repo)
    if git(["diff", "--cached", "--quiet", "--", *existing], repo, check=False).returncode == 0:
        return None
    git(["commit", "--quiet", "-m", message, "--", *existing], repo)
    return git(["rev-parse", "HEAD"], repo).stdout.strip()


def git_tag(repo: str | Path, name: str, message: str) -> bool:
    """Annotated tag on HEAD; False when the tag already exists (same dataset, same day)."""
    if git(["rev-parse", "--verify", "--quiet", f"refs/tags/{name}"], repo, check=False).returncode == 0:
        return False
    git(["tag", "-a", name, "-m", message], repo)
    return True


def tracked_state_files(repo: str | Path = ".") -> list[str]:
    """Files that record a run in git: dvc.lock, params.yaml, the .dvc pointers and the metrics (cache: false)."""
    from dvc.repo import Repo

    files = {"dvc.lock", "params.yaml"}
    with Repo(str(repo)) as r:
        root = Path(r.root_dir)
        for stage in r.index.stages:
            rel = Path(stage.dvcfile.path).resolve().relative_to(root.resolve())
            files.add(str(rel))
            for out in stage.outs:
                if not out.use_cache:
                    files.add(str(Path(out.fs_path).resolve().relative_to(root.resolve())))
    return sorted(files)


# ---------------------------------------------------------------------------------------------------------------
# scaffolding a workspace (tests, benchmarks, a dry run of a config change)


def make_workspace(
    dest: str | Path,
    src: Optional[str | Path] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    remotes: Optional[str | Path] = None,
) -> Path:
    """A fresh git + DVC repository at `dest` with this project's dvc.yaml, params.yaml, schemas/ and the stage code
    (pipeline/, as DVC code dependencies; the stages themselves run the installed `fraudslm`).

    `remotes` points both DVC remotes at `<remotes>/restricted` and `<remotes>/shared` (in .dvc/config.local).
    """
    from pipeline.config import REPO_ROOT

    src = Path(src or REPO_ROOT)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*.tmp")
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    for name in ("schemas", "pipeline"):
        shutil.copytree(src / name, dest / name, ignore=ignore, dirs_exist_ok=True)
    git(["init", "--quiet"], dest)
    run_dvc(["init", "--quiet"], dest)
    shutil.copy2(src / ".dvc" / "config", dest / ".dvc" / "config")
    if remotes is not None:
        for name in (RESTRICTED_REMOTE, SHARED_REMOTE):
            target = Path(remotes) / name
            target.mkdir(parents=True, exist_ok=True)
            run_dvc(["remote", "modify", "--local", name, "url", str(target.resolve())], dest)
    apply_overrides(dest / "params.yaml", overrides)
    git(["add", "-A"], dest)
    git(["commit", "--quiet", "-m", "workspace"], dest)
    return dest


def copy_workspace(src: str | Path, dest: str | Path, remotes: Optional[str | Path] = None) -> Path:
    """Copy a workspace made by make_workspace (git history, DVC cache and outputs included), optionally giving the
    copy its own remotes."""
    dest = Path(dest)
    shutil.copytree(src, dest, symlinks=True)
    if remotes is not None:
        for name in (RESTRICTED_REMOTE, SHARED_REMOTE):
            target = Path(remotes) / name
            target.mkdir(parents=True, exist_ok=True)
            run_dvc(["remote", "modify", "--local", name, "url", str(target.resolve())], dest)
    return dest
