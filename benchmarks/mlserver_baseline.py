"""MLServer 1.7 as a baseline for ``gateway_throughput.py``: its own virtualenv, the champion exported for it, and
V2-protocol request bodies carrying the same rows the gateway gets.

The virtualenv lives in ``benchmarks/.venvs/mlserver`` (gitignored) and is created on first use with the pinned
releases below (``python -m venv`` + ``pip install``); later runs reuse it. MLServer's sklearn runtime loads a
``model.joblib``, so the champion pipeline (the same object the gateway serves, loaded from the registry) is dumped
with joblib into a model directory with a ``model-settings.json`` using adaptive batching (8 rows, 2 ms) and a
``settings.json`` with ``parallel_workers: 0`` (inference in the server's own process, as the gateway does it) and
every port on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

VENV = Path(__file__).resolve().parent / ".venvs" / "mlserver"
PACKAGES = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1")
MODEL = "champion"  # the name MLServer serves it under
INFER_PATH = f"/v2/models/{MODEL}/infer"
MAX_BATCH_SIZE, MAX_BATCH_TIME = 8, 0.002


def venv_python() -> Path:
    return VENV / "bin" / "python"


def installed_versions() -> dict[str, str] | None:
    """The pinned packages' versions in the virtualenv (and scikit-learn's), or None when it is not usable."""
    if not venv_python().exists():
        return None
    probe = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({p: m.version(p) for p in ('mlserver', 'mlserver-sklearn', 'scikit-learn', 'joblib')}))"
    )
    done = subprocess.run([str(venv_python()), "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    versions: dict[str, str] = json.loads(done.stdout)
    wanted = dict(p.split("==") for p in PACKAGES)
    return versions if all(versions.get(k) == v for k, v in wanted.items()) else None


def ensure_venv(sklearn_version: str) -> dict[str, str]:
    """Create the virtualenv and install the pinned MLServer releases unless already there; returns the versions.

    scikit-learn is pinned to the version that trained the model when the MLServer packages allow it (a pickle is
    only guaranteed to load in the version that wrote it); otherwise pip's choice is kept and reported."""
    versions = installed_versions()
    if versions is not None:
        print(f"  MLServer virtualenv {VENV}: ready ({versions})", flush=True)
        return versions
    print(f"  creating the MLServer virtualenv {VENV} (first use; a few minutes)", flush=True)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(venv_python()), "-m", "pip", "install", "--progress-bar", "off"]
    print(f"  pip install {' '.join(PACKAGES)} scikit-learn=={sklearn_version}", flush=True)
    done = subprocess.run([*pip, *PACKAGES, f"scikit-learn=={sklearn_version}"])
    if done.returncode != 0:
        print(f"  scikit-learn=={sklearn_version} refused; installing {' '.join(PACKAGES)} alone", flush=True)
        subprocess.run([*pip, *PACKAGES], check=True)
    versions = installed_versions()
    if versions is None:
        raise RuntimeError(f"the MLServer virtualenv {VENV} was created but {PACKAGES} are not importable in it")
    print(f"  MLServer virtualenv ready: {versions}", flush=True)
    return versions


def write_model_repository(model: Any, root: Path, ports: dict[str, int]) -> Path:
    """Dump ``model`` with joblib into ``root/champion`` and write MLServer's settings; returns ``root``."""
    import joblib

    model_dir = root / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    model_settings = {
        "name": MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_time": MAX_BATCH_TIME,
        "parameters": {"uri": "./model.joblib"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    settings = {
        "host": "127.0.0.1",
        "http_port": ports["http"],
        "grpc_port": ports["grpc"],
        "metrics_port": ports["metrics"],
        "parallel_workers": 0,
        "metrics_dir": str(root / "metrics"),  # not the working directory (the repository)
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    return root


def command(root: Path) -> list[str]:
    return [str(VENV / "bin" / "mlserver"), "start", str(root)]


def v2_body(row: dict[str, float]) -> dict[str, Any]:
    """One row as a V2 inference request decoded to a one-row DataFrame (the pipeline selects columns by name)."""
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in row.items()],
    }


def write_bodies(path: Path, rows: list[dict[str, float]]) -> Path:
    path.write_text("\n".join(json.dumps(v2_body(row), separators=(",", ":")) for row in rows) + "\n")
    return path
