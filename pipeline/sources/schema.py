"""Access to the record schema in `schemas/record.py` (not an installed package, so it is loaded by path)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from types import ModuleType

from pipeline.config import REPO_ROOT
from pipeline.errors import ConfigError

RECORD_SCHEMA_PATH = REPO_ROOT / "schemas" / "record.py"


@functools.lru_cache(maxsize=1)
def record_schema() -> ModuleType:
    """The `schemas/record.py` module (Record model, column types, PII columns, Arrow schema, checks)."""
    name = "fraudslm_schemas_record"
    if name in sys.modules:
        return sys.modules[name]
    if not RECORD_SCHEMA_PATH.is_file():
        raise ConfigError(f"{RECORD_SCHEMA_PATH}: record schema not found")
    spec = importlib.util.spec_from_file_location(name, RECORD_SCHEMA_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
