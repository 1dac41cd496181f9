"""Deployments are defined once (flows/serve.py): infra/prefect.yaml is what it writes, every
entrypoint names a real flow taking those parameters, and `colorize serve` serves the same
deployments with the user's locations, each in its role."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml
from prefect import Flow

from flows.serve import DEPLOYMENTS, NIGHTLY_CRON, Locations, deployments, prefect_yaml

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "infra" / "prefect.yaml"


def _load_entrypoint(entrypoint: str) -> Flow:
    """As a worker loads it: from the file, not from an already imported module."""
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(f"entry_{name}", ROOT / path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    obj = getattr(module, name)
    assert isinstance(obj, Flow), f"{entrypoint} is not a flow"
    return obj


def test_prefect_yaml_is_generated_from_the_definitions() -> None:
    assert PREFECT_YAML.read_text() == prefect_yaml(), "infra/prefect.yaml is stale: run `make prefect-yaml`"


def test_every_deployment_loads_and_takes_its_parameters() -> None:
    config = yaml.safe_load(PREFECT_YAML.read_text())
    assert [d["name"] for d in config["deployments"]] == [d.name for d in DEPLOYMENTS]
    for dep in config["deployments"]:
        flow = _load_entrypoint(dep["entrypoint"])
        params = set(flow.parameters.properties)
        assert set(dep.get("parameters", {})) <= params, f"{dep['name']}: unknown parameters"
        if dep["name"] != "shard":  # the shard deployment gets its parameters from each run_deployment
            assert set(flow.parameters.required or []) <= set(dep.get("parameters", {})), dep["name"]
    nightly = next(d for d in config["deployments"] if d["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == NIGHTLY_CRON


def test_serve_puts_each_location_in_its_role() -> None:
    where = Locations(archive="bw", colorized="out", photos="colour", dataset="ds", checkpoint="model.safetensors")
    served = {d.name: d for d in deployments(where)}
    assert set(served) == {d.name for d in DEPLOYMENTS}
    assert served["nightly"].parameters == {"source": "bw", "dest": "out", "checkpoint": "latest", "retry_failed": False, "colour_photos": "skip"}
    # The training set is rebuilt from colour photos, never from the black-and-white archive.
    assert served["rebuild-dataset"].parameters == {"source": "colour", "dest": "ds", "size": 256}
    assert served["train"].parameters == {"data": "ds", "checkpoint": "model.safetensors", "resume": True}
    assert served["nightly"].schedules and served["nightly"].schedules[0].schedule.cron == NIGHTLY_CRON
    for d in DEPLOYMENTS:
        assert served[d.name].flow_name == _load_entrypoint(d.entrypoint).name
