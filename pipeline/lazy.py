"""Lazy package exports: `__getattr__ = lazy_getattr(__name__, _LAZY)` in a package `__init__` imports the module
that defines a public name on first use only, so importing one module of a package never loads the others (and the
`dvc.yaml` deps, derived from imports by tests/test_dvc_deps.py, follow what a stage really runs)."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) resolving `names` = {public name: defining module}."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
