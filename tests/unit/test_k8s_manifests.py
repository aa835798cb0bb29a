"""Every manifest in deploy/k8s validates against the Kubernetes and KEDA schemas, strictly.

Core kinds: ``kubernetes-validate --strict`` (unknown fields rejected) against each supported
Kubernetes minor release. KEDA's ScaledObject and TriggerAuthentication: the models that
``cloudcoil-models-keda`` generates from KEDA's own CRD schemas (KEDA 2.16), with every key
checked against the fields those schemas name, so a misspelt or misplaced field fails here too.
Nothing here needs a cluster; deploy/README.md says what was run and what was only validated.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.keda import v1alpha1 as keda

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
#: The Kubernetes releases the manifests must validate against: the three newest minor
#: releases (upstream's support window) that kubernetes-validate knows.
SUPPORTED = ("1.35.0", "1.36.0", "1.37.0")
KEDA_KINDS: dict[str, type[pydantic.BaseModel]] = {
    "ScaledObject": keda.ScaledObject,
    "TriggerAuthentication": keda.TriggerAuthentication,
}


def _documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc


_CORE = [(name, doc) for name, doc in _documents() if not doc["apiVersion"].startswith("keda.sh/")]
_KEDA = [(name, doc) for name, doc in _documents() if doc["apiVersion"].startswith("keda.sh/")]


def test_the_manifests_hold_core_and_keda_objects() -> None:
    kinds = {doc["kind"] for _, doc in _documents()}
    assert {"Deployment", "Job", "ConfigMap", "Secret", "Service"} <= kinds, kinds
    assert {doc["kind"] for _, doc in _KEDA} == set(KEDA_KINDS)


@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize(("name", "doc"), _CORE, ids=[n for n, _ in _CORE])
def test_core_manifest_validates_strictly(name: str, doc: dict[str, Any], version: str) -> None:
    assert kubernetes_validate.validate(doc, version, strict=True) == version.rsplit(".", 1)[0]


def test_strict_validation_rejects_an_unknown_field() -> None:
    [(_, deployment)] = [(n, d) for n, d in _CORE if d["kind"] == "Deployment"][:1]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, SUPPORTED[-1], strict=True)


def _model_of(annotation: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic model inside ``Optional[...]`` / ``list[...]`` / ``X | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, typing.List):  # noqa: UP006
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _unknown_keys(model: type[pydantic.BaseModel], data: Any, where: str) -> list[str]:
    """Keys of ``data`` that no field of ``model`` (by its YAML name) declares, recursively."""
    if isinstance(data, list):
        found = (_unknown_keys(model, item, f"{where}[{i}]") for i, item in enumerate(data))
        return [key for keys in found for key in keys]
    if not isinstance(data, dict):
        return []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    unknown = [f"{where}.{key}" for key in data if key not in fields]
    for key, value in data.items():
        inner = _model_of(fields[key].annotation) if key in fields else None
        if inner is not None and key != "metadata":
            unknown += _unknown_keys(inner, value, f"{where}.{key}")
    return unknown


@pytest.mark.parametrize(("name", "doc"), _KEDA, ids=[n for n, _ in _KEDA])
def test_keda_manifest_validates_against_the_crd_schema(name: str, doc: dict[str, Any]) -> None:
    model = KEDA_KINDS[doc["kind"]]
    model.model_validate(doc)
    assert _unknown_keys(model, doc, doc["kind"]) == []


def test_keda_check_rejects_a_misspelt_field() -> None:
    [scaled] = [d for _, d in _KEDA if d["kind"] == "ScaledObject"]
    broken = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 20}}
    assert _unknown_keys(keda.ScaledObject, broken, "ScaledObject") == [
        "ScaledObject.spec.maxReplicas"
    ]
    trigger = {**scaled["spec"]["triggers"][0], "authRef": {"name": "x"}}
    broken = {**scaled, "spec": {**scaled["spec"], "triggers": [trigger]}}
    assert _unknown_keys(keda.ScaledObject, broken, "ScaledObject") == [
        "ScaledObject.spec.triggers[0].authRef"
    ]
