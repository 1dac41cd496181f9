"""infra/prefect.yaml and `colorize serve` define the same deployments, and every entrypoint
imports and names a real flow."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from prefect import Flow

from flows.serve import NIGHTLY_CRON, deployments

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "infra" / "prefect.yaml"


def _load_entrypoint(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"entry_{name}", ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    obj = getattr(module, name)
    assert isinstance(obj, Flow), f"{entrypoint} is not a flow"
    return obj


def test_every_deployment_in_prefect_yaml_loads() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    deps = config["deployments"]
    assert {d["name"] for d in deps} == {"nightly", "rebuild-dataset", "train", "shard"}
    for dep in deps:
        flow = _load_entrypoint(dep["entrypoint"])
        params = set(flow.parameters.properties)
        assert set(dep.get("parameters", {})) <= params, f"{dep['name']}: unknown parameters"
        if dep["name"] != "shard":  # the shard deployment gets its parameters from each run_deployment
            assert set(flow.parameters.required or []) <= set(dep.get("parameters", {})), dep["name"]
    nightly = next(d for d in deps if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == NIGHTLY_CRON


def test_serve_and_prefect_yaml_agree() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    served = deployments("in", "out", "ds", "model.safetensors")
    by_name = {d.name: d for d in served}
    assert set(by_name) == {d["name"] for d in config["deployments"]}
    for dep in config["deployments"]:
        flow = _load_entrypoint(dep["entrypoint"])
        assert by_name[dep["name"]].flow_name == flow.name
    assert by_name["nightly"].schedules and by_name["nightly"].schedules[0].schedule.cron == NIGHTLY_CRON
