"""Contract: every Python module a DVC stage runs is one of that stage's `deps` in dvc.yaml.

For each stage, the `fraudslm <command>` it calls is found in pipeline/cli.py; the modules that command imports
(and the CLI helpers it uses) are followed through every `import` of the package, module-level or inside a
function (lazy imports run too), with the package `__init__`s on the way. Each file found must be covered by a
dep: the file itself or a folder above it. Otherwise DVC would serve a stale result after a code change.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PKG = "pipeline"


def _module_file(module: str) -> Optional[Path]:
    base = ROOT.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _lazy_attrs(module: str) -> dict[str, set[str]]:
    """{attribute: modules} of a package whose `__init__` exports lazily (the package style: a module-level
    `_LAZY = {"name": "pipeline.pkg.module"}` read by `__getattr__`): that module runs only when the name is used."""
    f = _module_file(module)
    if f is None or f.name != "__init__.py":
        return {}
    tree = ast.parse(f.read_text(encoding="utf-8"))
    out: dict[str, set[str]] = {}
    for n in tree.body:
        if isinstance(n, (ast.Assign, ast.AnnAssign)) and isinstance(n.value, ast.Dict):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
                for k, v in zip(n.value.keys, n.value.values):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and _module_file(v.value):
                        out.setdefault(k.value, set()).add(v.value)
    return out


def _imports(node: ast.AST, module: str, is_pkg: bool) -> set[str]:
    """Package modules imported anywhere under `node` (`from a import b` adds a.b when b is a module, or the module
    a lazy package exports b from)."""
    found: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            found.update(a.name for a in n.names if a.name.split(".")[0] == PKG)
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (n.level - 1)]
                target = ".".join(base + ([n.module] if n.module else []))
            else:
                target = n.module or ""
            if target.split(".")[0] != PKG:
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in n.names if _module_file(f"{target}.{a.name}"))
            attrs = _lazy_attrs(target)
            for a in n.names:
                found.update(attrs.get(a.name, ()))
    return {m for m in found if _module_file(m)}


def _with_parents(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(start: set[str]) -> set[Path]:
    """Files of every package module reachable from `start` by imports (package __init__s included)."""
    todo = set().union(*(_with_parents(m) for m in start)) if start else set()
    seen: set[str] = set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        f = _module_file(mod)
        if f is None:
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for m in _imports(tree, mod, f.name == "__init__.py"):
            todo |= _with_parents(m) - seen
    return {_module_file(m) for m in seen if _module_file(m)}


def command_modules(command: str) -> set[str]:
    """Package modules a `fraudslm <command>` imports: its function body and the CLI helpers it calls."""
    cli = ROOT / PKG / "cli.py"
    tree = ast.parse(cli.read_text(encoding="utf-8"))
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    target = None
    for fn in funcs.values():
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and getattr(dec.func, "attr", None) == "command":
                name = dec.args[0].value if dec.args and isinstance(dec.args[0], ast.Constant) \
                    else fn.name.replace("_", "-")
                if name == command:
                    target = fn
    assert target is not None, f"fraudslm {command}: no such command in pipeline/cli.py"
    mods: set[str] = set()
    todo, done = [target], set()
    while todo:
        fn = todo.pop()
        if fn.name in done:
            continue
        done.add(fn.name)
        mods |= _imports(fn, f"{PKG}.cli", False)
        for n in ast.walk(fn):  # helpers of the CLI module the command calls (_params, ...)
            if isinstance(n, ast.Name) and n.id in funcs and n.id != fn.name:
                todo.append(funcs[n.id])
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in funcs:
                todo.append(funcs[n.func.id])
    module_level = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                              type_ignores=[])
    return mods | _imports(module_level, f"{PKG}.cli", False)


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    for d in deps:
        d = d.rstrip("/")
        if rel == d or rel.startswith(d + "/"):
            return True
    return False


def missing_deps(dvc_doc: dict[str, Any]) -> dict[str, list[str]]:
    """{stage: [package files it imports that no dep covers]} for every `fraudslm` stage of dvc.yaml."""
    out: dict[str, list[str]] = {}
    for name, st in (dvc_doc.get("stages") or {}).items():
        cmd = st.get("cmd", "")
        cmd = cmd if isinstance(cmd, str) else " ".join(cmd)
        words = cmd.split()
        if not words or words[0] != "fraudslm":
            continue
        deps = [d if isinstance(d, str) else next(iter(d)) for d in st.get("deps") or []]
        files = closure(command_modules(words[1]))
        miss = sorted(f.relative_to(ROOT).as_posix() for f in files if not _covered(f, deps))
        if miss:
            out[name] = miss
    return out


@pytest.fixture(scope="module")
def dvc_doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def test_every_imported_module_is_a_dep(dvc_doc):
    missing = missing_deps(dvc_doc)
    assert not missing, "dvc.yaml deps miss the modules their stage imports: " + "; ".join(
        f"{s}: {', '.join(fs)}" for s, fs in missing.items())


def test_the_walk_finds_known_imports():
    # split imports quality.groups; the report reads through the contracts; every stage loads the config
    assert ROOT / "pipeline" / "quality" / "groups.py" in closure(command_modules("split"))
    assert ROOT / "pipeline" / "contracts.py" in closure(command_modules("report"))
    for command in ("ingest", "anonymize", "quality", "split", "train", "compress", "report"):
        files = closure(command_modules(command))
        assert ROOT / "pipeline" / "config.py" in files, command


def test_removing_a_dep_fails_the_check(dvc_doc):
    assert not missing_deps(dvc_doc).get("split")
    for dep in ("pipeline/contracts.py", "pipeline/quality/groups.py"):
        broken = copy.deepcopy(dvc_doc)
        deps = broken["stages"]["split"]["deps"]
        assert dep in deps, dep
        deps.remove(dep)
        miss = missing_deps(broken)["split"]
        assert any(m == dep or m.startswith(dep + "/") for m in miss), (dep, miss)
