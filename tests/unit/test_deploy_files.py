"""deploy/ stays true to the code: real subcommands and flags, env vars that something reads.

No Docker engine or cluster runs here, so this checks what can be checked statically: every
file parses, every ``vidjobs`` invocation in the Dockerfile, compose file and manifests names a
real subcommand with real flags and valid values, every VIDJOBS_*/DATABASE_URL variable they
set is read by the code, and the workers' stop grace covers ``--grace-seconds``. (The KEDA query
runs against a migrated database in tests/integration/test_roles.py.)
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from vidjobs.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "vidjobs"
_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_ENV_NAME = re.compile(r"^(VIDJOBS_[A-Z0-9_]+|DATABASE_URL)$")


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _compose() -> dict[str, Any]:
    (doc,) = _yaml_docs(DEPLOY / "docker-compose.yml")
    return doc


def _vidjobs_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in _compose()["services"].items()
        if str(svc.get("image", "")).split(":")[0] == IMAGE
    }


def _manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in _yaml_docs(path):
            yield path.name, doc


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    template = doc.get("spec", {}).get("template")
    return template["spec"] if template else None


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in _manifests():
        spec = _pod_spec(doc)
        for container in (spec or {}).get("containers", []):
            if str(container["image"]).split(":")[0] == IMAGE:
                yield f"{name}:{container['name']}", container


def _dockerfile_exec_lists() -> Iterator[tuple[str, list[str]]]:
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(ENTRYPOINT|CMD)\s+(\[.*\])\s*$", line)
        if match:
            yield match[1], yaml.safe_load(match[2])


def _invocations() -> list[tuple[str, list[str]]]:
    """Every argv given to the ``vidjobs`` console script, with where it comes from."""
    found: list[tuple[str, list[str]]] = []
    dockerfile = dict(_dockerfile_exec_lists())
    assert dockerfile["ENTRYPOINT"][-1] == "vidjobs", "the image's entrypoint runs vidjobs"
    found.append(("Dockerfile CMD", dockerfile["CMD"]))
    for name, svc in _vidjobs_services().items():
        command = svc["command"]
        found.append(
            (f"compose {name}", shlex.split(command) if isinstance(command, str) else command)
        )
        test = svc.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "vidjobs"]:
            found.append((f"compose {name} healthcheck", test[2:]))
    for where, container in _containers():
        found.append((where, container["args"]))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command", [])
            if command[:1] == ["vidjobs"]:
                found.append((f"{where} {probe}", command[1:]))
    return found


def _resolve(argv: list[str]) -> tuple[click.Command, list[str]]:
    command: click.Command = main
    rest = list(argv)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"'{' '.join(argv)}': no subcommand {rest[0]!r}"
        command, rest = sub, rest[1:]
    return command, rest


def _check_flags(command: click.Command, args: list[str]) -> None:
    ctx = click.Context(command)
    options = {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    tokens = iter(args)
    for token in tokens:
        if token in ("--help", "-h"):
            continue
        name, _, inline = token.partition("=")
        assert name.startswith("-"), f"unexpected argument {token!r} for {command.name}"
        param = options.get(name)
        assert isinstance(param, click.Option), f"{command.name} has no option {name}"
        if param.is_flag or param.count:
            continue
        value = inline or next(tokens)
        param.type.convert(value, param, ctx)  # raises on a bad value


@pytest.mark.parametrize(
    "argv",
    [pytest.param(argv, id=where) for where, argv in _invocations()],
)
def test_every_vidjobs_invocation_is_a_real_command(argv: list[str]) -> None:
    command, args = _resolve(argv)
    _check_flags(command, args)


def _names_read_by_code() -> set[str]:
    """VIDJOBS_*/DATABASE_URL string literals in product code (docstrings do not count)."""
    names: set[str] = set()
    for package in ("schema", "db", "blobs", "api", "worker", "vidjobs"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {
                id(node.body[0].value)
                for node in ast.walk(tree)
                if isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                )
                and node.body
                and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and _ENV_NAME.match(node.value)
                ):
                    names.add(node.value)
    return names


def _names_set_by_deploy() -> dict[str, str]:
    """Every VIDJOBS_*/DATABASE_URL variable the deploy files set, with where."""
    found: dict[str, str] = {}
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        for name in re.findall(r"\b([A-Z][A-Z0-9_]+)=", line):
            found.setdefault(name, "Dockerfile")
    anchors = _compose().get("x-vidjobs-env", {})
    for name, svc in _vidjobs_services().items():
        for var in [*svc.get("environment", {}), *anchors]:
            found.setdefault(var, f"compose {name}")
    config_maps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for _, doc in _manifests()
        if doc.get("kind") == "ConfigMap"
    }
    for where, container in _containers():
        for env in container.get("env", []):
            found.setdefault(env["name"], where)
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef", {}).get("name")
            assert ref in config_maps, f"{where}: envFrom an unknown ConfigMap {ref!r}"
            for var in config_maps[ref]:
                found.setdefault(var, f"{where} (ConfigMap {ref})")
    return {k: v for k, v in found.items() if _ENV_NAME.match(k)}


def test_every_variable_set_is_read_by_the_code() -> None:
    read = _names_read_by_code()
    unread = {k: v for k, v in _names_set_by_deploy().items() if k not in read}
    assert not unread, f"set in deploy/ but read nowhere: {unread}"


def test_every_yaml_file_parses() -> None:
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        assert _yaml_docs(path), path


def _grace(argv: list[str]) -> float:
    return float(argv[argv.index("--grace-seconds") + 1])


def test_worker_stop_grace_covers_grace_seconds() -> None:
    worker = _compose()["services"]["worker"]
    stop = float(str(worker["stop_grace_period"]).removesuffix("s"))
    grace = _grace(worker["command"])
    assert grace <= stop <= grace + 30
    assert worker["deploy"]["replicas"] == 3
    (deployment,) = [
        doc for _, doc in _manifests()
        if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "vidjobs-worker"
    ]  # fmt: skip
    spec = _pod_spec(deployment)
    assert spec is not None
    termination = spec["terminationGracePeriodSeconds"]
    assert _grace(spec["containers"][0]["args"]) <= termination <= grace + 30


def test_keda_scales_the_worker_deployment_from_the_dba_view() -> None:
    (scaled,) = [doc for _, doc in _manifests() if doc.get("kind") == "ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "vidjobs-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert "vidjobs.queue_overview" in trigger["metadata"]["query"]
