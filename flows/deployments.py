"""Deployments of the flows, declared once in prefect.yaml and served by `fraudslm serve`.

`serve_all()` reads prefect.yaml (names, entrypoints, cron schedules with time zones, parameters, tags) and serves
every deployment from this process with `prefect.serve` (no work pool needed). `prefect deploy --all` uses the same
file to register them on a work pool instead. Secrets are never parameters: see prefect.yaml.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Optional

import yaml

from pipeline.errors import ConfigError

PREFECT_YAML = Path(__file__).resolve().parent.parent / "prefect.yaml"


def load_specs(path: str | Path | None = None) -> list[dict[str, Any]]:
    p = Path(path or PREFECT_YAML)
    if not p.exists():
        raise ConfigError(f"{p}: prefect.yaml not found")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    specs = data.get("deployments") or []
    for i, spec in enumerate(specs):
        for key in ("name", "entrypoint"):
            if not spec.get(key):
                raise ConfigError(f"{p}: deployments[{i}]: missing {key}")
    return specs


def load_flow(entrypoint: str):
    """`flows/pipeline_flow.py:pipeline_flow` -> the flow object, imported from the installed `flows` package."""
    try:
        file_part, name = entrypoint.split(":")
        module = importlib.import_module(file_part.removesuffix(".py").replace("/", "."))
        return getattr(module, name)
    except (ValueError, ImportError, AttributeError):
        raise ConfigError(f"prefect.yaml: entrypoint {entrypoint!r} does not name a flow") from None


def build_deployments(
    path: str | Path | None = None,
    repo: Optional[str | Path] = None,
    names: Optional[list[str]] = None,
    with_schedules: bool = True,
) -> list:
    """RunnerDeployments from prefect.yaml. `repo` overrides each deployment's `repo` parameter."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    deployments = []
    for spec in load_specs(path):
        if names and spec["name"] not in names:
            continue
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
            for s in (spec.get("schedules") or [])
            if with_schedules and s.get("cron")
        ]
        parameters = dict(spec.get("parameters") or {})
        if repo is not None:
            parameters["repo"] = str(Path(repo).resolve())
        flow_obj = load_flow(spec["entrypoint"])
        deployments.append(
            flow_obj.to_deployment(
                name=spec["name"],
                schedules=schedules or None,
                parameters=parameters,
                description=spec.get("description"),
                tags=spec.get("tags"),
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    if not deployments:
        raise ConfigError("prefect.yaml: no deployment selected")
    return deployments


def serve_all(
    path: str | Path | None = None,
    repo: Optional[str | Path] = None,
    names: Optional[list[str]] = None,
    with_schedules: bool = True,
    limit: int = 1,
) -> None:
    """Serve the deployments of prefect.yaml until interrupted (one flow run at a time by default: the stages
    share one DVC workspace)."""
    from prefect import serve

    serve(*build_deployments(path, repo, names, with_schedules), limit=limit)


if __name__ == "__main__":  # pragma: no cover
    serve_all()
