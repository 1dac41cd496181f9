"""infra/: the compose stack, the Kubernetes GPU job template, the container image."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prefect_server import prefect_cli

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"


def test_compose_parses_and_names_every_service_the_readme_mentions() -> None:
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Running at scale", 1)[1].split("\n## ", 1)[0]
    mentioned = set(re.findall(r"`([a-z][a-z0-9-]*)`\s+service", section))
    assert mentioned and mentioned <= set(services), mentioned - set(services)
    assert {"postgres", "prefect-server", "minio", "minio-init", "worker"} <= set(services)
    server_env = services["prefect-server"]["environment"]
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "PREFECT_SERVER_API_AUTH_STRING" in server_env  # basic auth on
    assert services["worker"]["environment"]["PREFECT_API_AUTH_STRING"] == "${PREFECT_AUTH}"
    gpus = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpus["driver"] == "nvidia" and "gpu" in gpus["capabilities"]
    # Every ${VAR} comes from the env file, whose example is committed and real one ignored.
    used = set(re.findall(r"\$\{([A-Z_]+)\}", (INFRA / "compose.yaml").read_text()))
    example = {line.split("=", 1)[0] for line in (INFRA / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#")}
    assert used <= example, used - example
    assert "infra/.env" in (ROOT / ".gitignore").read_text()


def _contains(big: Any, small: Any, path: str = "") -> list[str]:
    """Paths where `small` is not contained in `big` (dicts recursively, lists element-wise)."""
    if isinstance(small, dict):
        if not isinstance(big, dict):
            return [path]
        return [p for k, v in small.items() for p in (_contains(big[k], v, f"{path}.{k}") if k in big else [f"{path}.{k}"])]
    if isinstance(small, list):
        if not isinstance(big, list) or len(big) != len(small):
            return [path]
        return [p for i, (b, s) in enumerate(zip(big, small)) for p in _contains(b, s, f"{path}[{i}]")]
    return [] if big == small else [path]


@pytest.mark.slow  # seconds of work: `make test`, not test-fast
def test_kubernetes_template_is_a_superset_of_prefects_default_with_a_gpu_limit() -> None:
    out = subprocess.run(
        [*prefect_cli(), "work-pool", "get-default-base-job-template", "--type", "kubernetes"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    default = json.loads(out[out.index("{") :])
    ours = json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())
    assert _contains(ours, default) == []
    props = ours["variables"]["properties"]
    assert props["gpu_limit"]["type"] == "integer" and props["gpu_limit"]["default"] == 1
    pod = ours["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_limit }}"
    assert pod["nodeSelector"] == "{{ node_selector }}" and pod["tolerations"] == "{{ tolerations }}"
    # The committed file is exactly what the generator makes from today's default.
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_template", INFRA / "k8s" / "make_template.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.add_gpu(default) == ours


def test_dockerfile_runs_as_non_root_and_bakes_no_secrets() -> None:
    text = (INFRA / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert not re.search(r"(SECRET|PASSWORD|AUTH_STRING|ACCESS_KEY)\w*\s*=", text)
    assert "infra/.env" in (ROOT / ".dockerignore").read_text()
    values = yaml.safe_load((INFRA / "k8s" / "worker-values.yaml").read_text())
    assert values["worker"]["config"]["workPool"] == "colorize-gpu" and values["worker"]["config"]["type"] == "kubernetes"
