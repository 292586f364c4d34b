"""Kubernetes manifests for the gateway and a Prefect worker, rendered from the project config, and applied with the
official client (server-side apply, so re-running it is an update, not an error).

What is rendered (all labelled ``app.kubernetes.io/part-of: mlops`` and ``app.kubernetes.io/instance: <model>``):

- ``ConfigMap <model>-config``: the project config and the files it points at (the expectation suite), mounted at
  ``/etc/mlops`` so the pods run the same config as ``mlops run`` does locally;
- ``Deployment <model>-gateway`` (``mlops serve``): readiness on ``/readyz`` (a model is loaded), liveness on
  ``/healthz``, a startup probe while the first model loads, rolling updates that never drop below the desired
  replicas, a non-root read-only container with every capability dropped, Prometheus scrape annotations;
- ``Service <model>-gateway`` on port 80;
- ``PodDisruptionBudget`` (with two replicas or more) so a node drain never takes every gateway down;
- ``Deployment <model>-worker`` (``prefect worker start --pool mlops-process``) when a Prefect API URL is given.

Pods share nothing on disk, so the stores must be servers: the MLflow tracking URI must be ``http(s)://`` or a
database URL, and the project store (change requests, prediction log, rollouts) a PostgreSQL URL kept in a Secret
(key ``database-url``; ``kubectl create secret generic <name> --from-literal=database-url=postgresql://...``).
``render`` refuses SQLite or file stores with a message that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.config import ProjectConfig
from core.errors import ConfigError, MlopsError

PORT = 8080
CONFIG_DIR = "/etc/mlops"
FIELD_MANAGER = "mlops"
WORK_POOL = "mlops-process"


@dataclass(frozen=True)
class KubeTarget:
    image: str
    tracking_uri: str
    database_secret: str
    namespace: str = "default"
    replicas: int = 2
    prefect_api_url: str | None = None
    token_secret: str | None = None  # Secret with key ``token``: enables the gateway's admin endpoints
    cpu: str = "500m"
    memory: str = "1Gi"

    def check(self) -> None:
        problems = []
        if not self.image or any(c.isspace() for c in self.image):
            problems.append(f"image {self.image!r} is not an image reference; pass e.g. --image ghcr.io/you/mlops:1.0")
        if not re.match(r"^(https?|postgresql(\+\w+)?|mysql(\+\w+)?|mssql(\+\w+)?)://", self.tracking_uri):
            problems.append(
                f"tracking URI {self.tracking_uri!r} is not shared between pods; pass --tracking-uri "
                "http(s)://<mlflow server> or a PostgreSQL/MySQL URL (SQLite and file stores live on one disk)"
            )
        for label, name in (("database secret", self.database_secret), ("token secret", self.token_secret)):
            if name is not None and not _dns_name(name):
                problems.append(f"{label} {name!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
        if not _dns_name(self.namespace):
            problems.append(f"namespace {self.namespace!r} is not a valid Kubernetes name")
        if not 1 <= self.replicas <= 100:
            problems.append(f"replicas must be between 1 and 100, got {self.replicas}")
        if self.prefect_api_url is not None and not re.match(r"^https?://", self.prefect_api_url):
            problems.append(f"Prefect API URL {self.prefect_api_url!r} must start with http:// or https://")
        if problems:
            raise ConfigError("; ".join(problems))


def _dns_name(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)) and len(name) <= 63


def resource_name(model_name: str) -> str:
    """A DNS-1123 label from the model name (``Breast Cancer_v2`` -> ``breast-cancer-v2``), at most 50 characters
    so suffixes such as ``-gateway`` still fit."""
    name = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")[:50].strip("-")
    if not name:
        raise ConfigError(f"model name {model_name!r} gives no usable Kubernetes name; use letters or digits in it")
    return name


def config_files(config: ProjectConfig, config_path: Path) -> dict[str, tuple[str, str]]:
    """ConfigMap key -> (path under /etc/mlops, content): the config and the suite it references."""
    files = {"project.yaml": ("project.yaml", config_path.read_text())}
    if config.validation.suite:
        suite = Path(config.validation.suite)
        if suite.is_absolute() or ".." in suite.parts:
            raise ConfigError(
                f"validation.suite {config.validation.suite!r} must be a path inside the config's folder to be "
                "shipped in the ConfigMap; move the suite next to the config"
            )
        files[re.sub(r"[^-._a-zA-Z0-9]", "_", suite.as_posix())] = (
            suite.as_posix(),
            config.resolve(config.validation.suite).read_text(),
        )
    return files


def render(config: ProjectConfig, config_path: Path, target: KubeTarget) -> list[dict[str, Any]]:
    """The manifests, as plain dicts in apply order."""
    target.check()
    name = resource_name(config.model_name)
    labels = {"app.kubernetes.io/part-of": "mlops", "app.kubernetes.io/instance": name}
    files = config_files(config, config_path)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-config", "namespace": target.namespace, "labels": labels},
        "data": {key: content for key, (_, content) in files.items()},
    }
    env = [
        {"name": "MLOPS_CONFIG", "value": f"{CONFIG_DIR}/project.yaml"},
        {"name": "MLOPS_HOME", "value": "/var/lib/mlops"},
        {"name": "MLFLOW_TRACKING_URI", "value": target.tracking_uri},
        {
            "name": "MLOPS_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": target.database_secret, "key": "database-url"}},
        },
    ]
    volumes = [
        {
            "name": "config",
            "configMap": {
                "name": f"{name}-config",
                "items": [{"key": key, "path": path} for key, (path, _) in files.items()],
            },
        },
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "home", "mountPath": "/var/lib/mlops"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    resources = {
        "requests": {"cpu": target.cpu, "memory": target.memory},
        "limits": {"memory": target.memory},  # no CPU limit: throttling a Python server only adds latency
    }

    gateway_labels = {**labels, "app.kubernetes.io/component": "gateway"}
    gateway_env = list(env)
    if target.token_secret:
        token_ref = {"secretKeyRef": {"name": target.token_secret, "key": "token"}}
        gateway_env.append({"name": "MLOPS_GATEWAY_TOKEN", "valueFrom": token_ref})
    gateway = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-gateway", "namespace": target.namespace, "labels": gateway_labels},
        "spec": {
            "replicas": target.replicas,
            "selector": {"matchLabels": gateway_labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": gateway_labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "gateway",
                            "image": target.image,
                            "args": ["serve", "--host", "0.0.0.0", "--port", str(PORT)],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "env": gateway_env,
                            "volumeMounts": mounts,
                            "resources": resources,
                            "securityContext": security,
                            "startupProbe": _probe("/healthz", period=2, failures=60),
                            "readinessProbe": _probe("/readyz", period=5, failures=2),
                            "livenessProbe": _probe("/healthz", period=10, failures=3),
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-gateway", "namespace": target.namespace, "labels": gateway_labels},
        "spec": {
            "selector": gateway_labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    docs: list[dict[str, Any]] = [config_map, gateway, service]
    if target.replicas >= 2:
        docs.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": f"{name}-gateway", "namespace": target.namespace, "labels": gateway_labels},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": gateway_labels}},
            }
        )
    if target.prefect_api_url:
        worker_labels = {**labels, "app.kubernetes.io/component": "worker"}
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"{name}-worker", "namespace": target.namespace, "labels": worker_labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": worker_labels},
                    "template": {
                        "metadata": {"labels": worker_labels},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "containers": [
                                {
                                    "name": "worker",
                                    "image": target.image,
                                    "command": ["prefect"],
                                    "args": ["worker", "start", "--pool", WORK_POOL, "--type", "process"],
                                    "env": [*env, {"name": "PREFECT_API_URL", "value": target.prefect_api_url}],
                                    "volumeMounts": mounts,
                                    "resources": resources,
                                    "securityContext": security,
                                }
                            ],
                            "volumes": volumes,
                        },
                    },
                },
            }
        )
    return docs


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config files in the ConfigMap) as literal blocks, readable in ``kubectl get -o yaml``."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return "---\n" + "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120) for doc in docs)


def apply(docs: list[dict[str, Any]], context: str | None = None) -> list[str]:
    """Server-side apply every manifest to the cluster of the kubeconfig (or the pod's own cluster) and return what
    was applied. Needs a reachable cluster: none exists on the development machine, so this path is exercised
    only up to the point where the client looks for one (see tests/unit/test_kubernetes.py)."""
    from kubernetes import client, config, dynamic
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config(context=context)
    except (ConfigException, FileNotFoundError, TypeError) as kube_err:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise MlopsError(
                f"no Kubernetes cluster configured ({kube_err}); set KUBECONFIG or pass --context, or write the "
                "manifests with `mlops k8s render --out FILE` and apply them with kubectl"
            ) from None
    api = dynamic.DynamicClient(client.ApiClient())
    applied = []
    for doc in docs:
        resource = api.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        api.server_side_apply(
            resource,
            body=doc,
            namespace=doc["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )
        applied.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return applied
