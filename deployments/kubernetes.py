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
- ``HorizontalPodAutoscaler <model>-gateway`` on CPU, between the planned replicas and ``kubernetes.max_replicas``;
- with a Prefect API: a worker on the Kubernetes work pool ``mlops-kubernetes`` (its ServiceAccount, and a Role that
  lets it create the Jobs, watch their pods and read their logs, nothing more), so every flow run is its own Job
  sized by ``kubernetes.flow_*`` under its own ServiceAccount; ``work_pool_template`` renders the pool's base job
  template (``prefect work-pool create mlops-kubernetes --type kubernetes --base-job-template FILE``);
  ``--work-pool process`` keeps the older process worker inside one pod;
- with ``servers``: an MLflow tracking server and a Prefect server, each on PostgreSQL (URLs from the same Secret,
  keys ``mlflow-database-url`` and ``prefect-database-url``), MLflow's artifacts on a PersistentVolumeClaim.
- with ``credentials_secret``: both servers take credentials from that Secret and every pod (gateway, worker, flow-run
  Jobs) logs in with them: key ``prefect-auth-string`` (``user:password``; the Prefect server's
  ``PREFECT_SERVER_API_AUTH_STRING``, the clients' ``PREFECT_API_AUTH_STRING``), ``mlflow-username`` and
  ``mlflow-password`` (MLflow's basic-auth admin, made on the server's first start; the clients'
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) and ``mlflow-secret-key`` (signs the auth app's CSRF
  tokens). The auth app's user database has a small volume of its own, out of the artifact API's reach.

Pods share nothing on disk, so the stores must be servers: the MLflow tracking URI must be ``http(s)://`` or a
database URL, and the project store (change requests, prediction log, rollouts) a PostgreSQL URL kept in a Secret
(key ``database-url``; ``kubectl create secret generic <name> --from-literal=database-url=postgresql://...``).
``render`` refuses SQLite or file stores with a message that says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from core.config import ProjectConfig
from core.errors import ConfigError, MlopsError

PORT = 8080
CONFIG_DIR = "/etc/mlops"
FIELD_MANAGER = "mlops"
WORK_POOLS = {"kubernetes": "mlops-kubernetes", "process": "mlops-process"}
MLFLOW_PORT, PREFECT_PORT = 5000, 4200
# the keys of ``KubeTarget.credentials_secret`` and the client variables each one fills
CLIENT_CREDENTIALS = {
    "PREFECT_API_AUTH_STRING": "prefect-auth-string",
    "MLFLOW_TRACKING_USERNAME": "mlflow-username",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-password",
}
CREDENTIAL_KEYS = (*CLIENT_CREDENTIALS.values(), "mlflow-secret-key")
MLFLOW_AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:////var/lib/mlflow-auth/basic_auth.db
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@dataclass(frozen=True)
class KubeTarget:
    image: str
    tracking_uri: str
    database_secret: str
    namespace: str = "default"
    replicas: int | None = None  # None: the config's kubernetes.min_replicas
    prefect_api_url: str | None = None
    token_secret: str | None = None  # Secret with key ``token``: enables the gateway's admin endpoints
    work_pool: Literal["kubernetes", "process"] = "kubernetes"
    servers: bool = False  # also render the MLflow and Prefect servers
    artifact_storage: str = "20Gi"  # the MLflow artifact volume, with ``servers``
    credentials_secret: str | None = None  # Secret with the servers' credentials (CREDENTIAL_KEYS)

    def check(self) -> None:
        problems = []
        if not self.image or any(c.isspace() for c in self.image):
            problems.append(f"image {self.image!r} is not an image reference; pass e.g. --image ghcr.io/you/mlops:1.0")
        if not re.match(r"^(https?|postgresql(\+\w+)?|mysql(\+\w+)?|mssql(\+\w+)?)://", self.tracking_uri):
            problems.append(
                f"tracking URI {self.tracking_uri!r} is not shared between pods; pass --tracking-uri "
                "http(s)://<mlflow server> or a PostgreSQL/MySQL URL (SQLite and file stores live on one disk)"
            )
        secrets = (
            ("database secret", self.database_secret),
            ("token secret", self.token_secret),
            ("credentials secret", self.credentials_secret),
        )
        for label, name in secrets:
            if name is not None and not _dns_name(name):
                problems.append(f"{label} {name!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
        if not _dns_name(self.namespace):
            problems.append(f"namespace {self.namespace!r} is not a valid Kubernetes name")
        if self.replicas is not None and not 1 <= self.replicas <= 100:
            problems.append(f"replicas must be between 1 and 100, got {self.replicas}")
        if self.prefect_api_url is not None and not re.match(r"^https?://", self.prefect_api_url):
            problems.append(f"Prefect API URL {self.prefect_api_url!r} must start with http:// or https://")
        if self.work_pool not in WORK_POOLS:
            problems.append(f"work pool type {self.work_pool!r} is not one of {', '.join(WORK_POOLS)}")
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
    env, mounts, volumes = _store_wiring(name, files, target)
    security = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sizes = config.kubernetes
    replicas = target.replicas or sizes.min_replicas
    resources = {
        "requests": {"cpu": sizes.gateway_cpu, "memory": sizes.gateway_memory},
        "limits": {"memory": sizes.gateway_memory},  # no CPU limit: throttling a Python server only adds latency
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
            "replicas": replicas,
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
    if replicas >= 2:
        docs.append(
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": f"{name}-gateway", "namespace": target.namespace, "labels": gateway_labels},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": gateway_labels}},
            }
        )
    docs.append(_autoscaler(name, target.namespace, gateway_labels, replicas, config))
    if target.prefect_api_url:
        docs += _worker(name, target, labels, env, mounts, volumes, security, config)
    if target.servers:
        docs += _servers(name, target, labels, security)
    return docs


def _store_wiring(
    name: str, files: dict[str, tuple[str, str]], target: KubeTarget
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Env, volume mounts and volumes every project pod shares: the config from its ConfigMap, the shared stores
    (MLflow by URL, the project store from the Secret), and writable scratch space on a read-only root."""
    env = [
        {"name": "MLOPS_CONFIG", "value": f"{CONFIG_DIR}/project.yaml"},
        {"name": "MLOPS_HOME", "value": "/var/lib/mlops"},
        {"name": "MLOPS_LOG_FORMAT", "value": "json"},  # one JSON object per line for the cluster's log collector
        {"name": "MLFLOW_TRACKING_URI", "value": target.tracking_uri},
        {
            "name": "MLOPS_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": target.database_secret, "key": "database-url"}},
        },
    ]
    if target.credentials_secret:
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": target.credentials_secret, "key": key}}}
            for var, key in CLIENT_CREDENTIALS.items()
        ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "home", "mountPath": "/var/lib/mlops"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes = [
        {
            "name": "config",
            "configMap": {"name": f"{name}-config", "items": [{"key": k, "path": p} for k, (p, _) in files.items()]},
        },
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    return env, mounts, volumes


def _autoscaler(
    name: str, namespace: str, labels: dict[str, str], replicas: int, config: ProjectConfig
) -> dict[str, Any]:
    """CPU-based autoscaling of the gateway, never below the planned (or configured) replica count."""
    sizes = config.kubernetes
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": f"{name}-gateway", "namespace": namespace, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-gateway"},
            "minReplicas": replicas,
            "maxReplicas": max(replicas, sizes.max_replicas),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": sizes.target_cpu_percent},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},  # no flapping after a burst
        },
    }


def _worker(
    name: str,
    target: KubeTarget,
    labels: dict[str, str],
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    security: dict[str, Any],
    config: ProjectConfig,
) -> list[dict[str, Any]]:
    """The Prefect worker; on the Kubernetes pool with the least RBAC it needs to run flow runs as Jobs."""
    worker_labels = {**labels, "app.kubernetes.io/component": "worker"}
    pool = WORK_POOLS[target.work_pool]
    meta = {"namespace": target.namespace, "labels": worker_labels}
    docs: list[dict[str, Any]] = []
    pod: dict[str, Any] = {"automountServiceAccountToken": False}
    if target.work_pool == "kubernetes":
        account = f"{name}-worker"
        docs += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, **meta}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": config.kubernetes.flow_service_account, **meta},
                "automountServiceAccountToken": False,  # flow runs talk to MLflow, Prefect and the store, not the API
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": account, **meta},
                "rules": [
                    {
                        "apiGroups": ["batch"],
                        "resources": ["jobs"],
                        "verbs": ["create", "get", "list", "watch", "delete"],
                    },
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
                    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": account, **meta},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": target.namespace}],
            },
        ]
        pod = {"serviceAccountName": account, "automountServiceAccountToken": True}
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{name}-worker", **meta},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": worker_labels},
                "template": {
                    "metadata": {"labels": worker_labels},
                    "spec": {
                        **pod,
                        "containers": [
                            {
                                "name": "worker",
                                "image": target.image,
                                "command": ["prefect"],
                                "args": ["worker", "start", "--pool", pool, "--type", target.work_pool],
                                "env": [*env, {"name": "PREFECT_API_URL", "value": target.prefect_api_url}],
                                "volumeMounts": mounts,
                                "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
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


def _servers(name: str, target: KubeTarget, labels: dict[str, str], security: dict[str, Any]) -> list[dict[str, Any]]:
    """An MLflow tracking server and a Prefect server on PostgreSQL, each with a Service."""

    def db(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": target.database_secret, "key": key}}

    def cred(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": target.credentials_secret, "key": key}}

    mlflow_labels = {**labels, "app.kubernetes.io/component": "mlflow"}
    prefect_labels = {**labels, "app.kubernetes.io/component": "prefect"}
    mlflow_cmd = [
        "mlflow", "server", "--host", "0.0.0.0", "--port", str(MLFLOW_PORT),
        "--backend-store-uri", "$(MLFLOW_DATABASE_URL)",
        "--serve-artifacts", "--artifacts-destination", "/var/lib/mlflow-artifacts",
        # MLflow 3 refuses Host headers it does not know (DNS-rebinding protection): allow the Service's names
        "--allowed-hosts", ",".join(
            f"{host}{port}"
            for host in (f"{name}-mlflow", f"{name}-mlflow.{target.namespace}", f"{name}-mlflow.{target.namespace}.svc")
            for port in ("", f":{MLFLOW_PORT}")
        ),
    ]  # fmt: skip
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"{name}-mlflow-artifacts", "namespace": target.namespace, "labels": mlflow_labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": target.artifact_storage}}},
    }
    mlflow_env: list[dict[str, Any]] = [{"name": "MLFLOW_DATABASE_URL", "valueFrom": db("mlflow-database-url")}]
    mlflow_mounts = [
        ("artifacts", "/var/lib/mlflow-artifacts", {"persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}})
    ]
    prefect_env: list[dict[str, Any]] = []
    auth_config: list[dict[str, Any]] = []
    if target.credentials_secret:
        # MLflow's basic-auth app (its user database on a small volume of its own, out of the artifact API's reach)
        # and Prefect's auth string, both from the credentials Secret; /health and /api/health stay open for probes
        auth_meta = {"name": f"{name}-mlflow-auth", "namespace": target.namespace, "labels": mlflow_labels}
        auth_config = [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": auth_meta, "data": {"auth.ini": MLFLOW_AUTH_INI}},
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": auth_meta,
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        ]
        mlflow_cmd += ["--app-name", "basic-auth"]
        mlflow_env += [
            {"name": "MLFLOW_AUTH_CONFIG_PATH", "value": "/etc/mlflow-auth/auth.ini"},
            {"name": "MLFLOW_AUTH_ADMIN_USERNAME", "valueFrom": cred("mlflow-username")},
            {"name": "MLFLOW_AUTH_ADMIN_PASSWORD", "valueFrom": cred("mlflow-password")},
            {"name": "MLFLOW_FLASK_SERVER_SECRET_KEY", "valueFrom": cred("mlflow-secret-key")},
        ]
        mlflow_mounts += [
            ("auth-db", "/var/lib/mlflow-auth", {"persistentVolumeClaim": {"claimName": auth_meta["name"]}}),
            ("auth-config", "/etc/mlflow-auth", {"configMap": {"name": auth_meta["name"]}}),
        ]
        prefect_env = [{"name": "PREFECT_SERVER_API_AUTH_STRING", "valueFrom": cred("prefect-auth-string")}]
    mlflow = _server(
        f"{name}-mlflow",
        target,
        mlflow_labels,
        security,
        command=mlflow_cmd,
        port=MLFLOW_PORT,
        health="/health",
        env=mlflow_env,
        mounts=mlflow_mounts,
    )
    prefect = _server(
        f"{name}-prefect",
        target,
        prefect_labels,
        security,
        command=["prefect", "server", "start", "--host", "0.0.0.0", "--port", str(PREFECT_PORT)],
        port=PREFECT_PORT,
        health="/api/health",
        env=[
            {"name": "PREFECT_API_DATABASE_CONNECTION_URL", "valueFrom": db("prefect-database-url")},
            {"name": "PREFECT_HOME", "value": "/tmp/prefect"},
            {"name": "PREFECT_SERVER_ANALYTICS_ENABLED", "value": "false"},
            *prefect_env,
        ],
        mounts=[],
    )
    return [pvc, *auth_config, *mlflow, *prefect]


def _server(
    name: str,
    target: KubeTarget,
    labels: dict[str, str],
    security: dict[str, Any],
    *,
    command: list[str],
    port: int,
    health: str,
    env: list[dict[str, Any]],
    mounts: list[tuple[str, str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    meta = {"name": name, "namespace": target.namespace, "labels": labels}
    volumes = [{"name": "tmp", "emptyDir": {}}, *({"name": v, **source} for v, _, source in mounts)]
    volume_mounts = [{"name": "tmp", "mountPath": "/tmp"}, *({"name": v, "mountPath": path} for v, path, _ in mounts)]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one writer of its volume at a time
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"fsGroup": 10001},  # the volume writable by the image's non-root user
                    "containers": [
                        {
                            "name": name.rsplit("-", 1)[-1],
                            "image": target.image,
                            "command": command,
                            "ports": [{"name": "http", "containerPort": port}],
                            "env": env,
                            "volumeMounts": volume_mounts,
                            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                            "securityContext": security,
                            "startupProbe": _probe(health, period=5, failures=60),
                            "readinessProbe": _probe(health, period=10, failures=3),
                            "livenessProbe": _probe(health, period=20, failures=3),
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
        "metadata": meta,
        "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": "http"}]},
    }
    return [deployment, service]


def server_urls(model_name: str, namespace: str) -> tuple[str, str]:
    """The in-cluster URLs of the rendered MLflow and Prefect servers."""
    name = resource_name(model_name)
    return (
        f"http://{name}-mlflow.{namespace}.svc:{MLFLOW_PORT}",
        f"http://{name}-prefect.{namespace}.svc:{PREFECT_PORT}/api",
    )


def work_pool_template(config: ProjectConfig, config_path: Path, target: KubeTarget) -> dict[str, Any]:
    """The base job template of the ``mlops-kubernetes`` work pool: prefect-kubernetes' default with each flow run's
    Job made the project's (image, the config mounted from its ConfigMap, stores from the Secret, sizes and
    ServiceAccount from ``kubernetes:``, non-root and read-only like the gateway)."""
    from prefect_kubernetes.worker import KubernetesWorker

    target.check()
    name = resource_name(config.model_name)
    sizes = config.kubernetes
    template = KubernetesWorker.get_default_base_job_template()
    files = config_files(config, config_path)
    manifest = template["job_configuration"]["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["env"], container["volumeMounts"], pod["volumes"] = _store_wiring(name, files, target)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod["automountServiceAccountToken"] = False
    # prefect-kubernetes' default puts these two Job fields in the pod spec, where strict validation (and the API
    # server's field validation) rejects them; they belong to the Job
    manifest["spec"]["completions"] = pod.pop("completions", 1)
    manifest["spec"]["parallelism"] = pod.pop("parallelism", 1)
    defaults = {
        "image": target.image,
        "namespace": target.namespace,
        "service_account_name": sizes.flow_service_account,
        "cpu_request": sizes.flow_cpu,
        "memory_request": sizes.flow_memory,
        "memory_limit": sizes.flow_memory,
        "finished_job_ttl": sizes.finished_job_ttl_seconds,
    }
    properties = template["variables"]["properties"]
    for key, value in defaults.items():
        properties[key]["default"] = value
    _drop_cpu_limit(manifest)
    return template


def _drop_cpu_limit(manifest: dict[str, Any]) -> None:
    """No CPU limit on flow runs either: a throttled training run is only slower, never safer."""
    limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"].get("limits", {})
    limits.pop("cpu", None)


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
