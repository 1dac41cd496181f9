"""Build infra/k8s/gpu-job-template.json: Prefect's default Kubernetes base job template with GPU
scheduling added (a `gpu_limit` on `nvidia.com/gpu`, a node selector and tolerations for GPU
nodes). Nothing of the default is removed or changed, so the result stays a superset of it.

Run after upgrading prefect-kubernetes:
    prefect work-pool get-default-base-job-template --type kubernetes > /tmp/default.json
    python infra/k8s/make_template.py /tmp/default.json > infra/k8s/gpu-job-template.json
"""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

GPU_VARIABLES: dict[str, Any] = {
    "gpu_limit": {
        "title": "GPUs per pod",
        "description": "The pod's nvidia.com/gpu limit (the NVIDIA device plugin schedules it).",
        "type": "integer",
        "default": 1,
    },
    "node_selector": {
        "title": "Node selector",
        "description": "Labels a node must have to run the pod, e.g. GPU nodes.",
        "type": "object",
        "default": {"nvidia.com/gpu.present": "true"},
    },
    "tolerations": {
        "title": "Tolerations",
        "description": "Lets the pod onto GPU nodes that are tainted for GPU work only.",
        "type": "array",
        "items": {"type": "object"},
        "default": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def add_gpu(default: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(default)
    template["variables"]["properties"].update(copy.deepcopy(GPU_VARIABLES))
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container.setdefault("resources", {}).setdefault("limits", {})["nvidia.com/gpu"] = "{{ gpu_limit }}"
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["tolerations"] = "{{ tolerations }}"
    return template


def main() -> None:
    with open(sys.argv[1]) as f:
        default = json.load(f)
    json.dump(add_gpu(default), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
