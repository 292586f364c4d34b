"""Loading a registered version's model: the one place every caller (lifecycle scoring, monitoring, the gateway)
goes through, so what may be loaded is decided once.

``mlflow.sklearn.load_model`` follows whatever format the version's MLmodel file names, pickle included, and for
skops it trusts the types that same file lists: whoever can write a version to the registry could run code in the
gateway and in ``mlops run``. Here the MLmodel file is read first and only an allowlisted format is loaded: skops,
with the types the file actually contains checked against ``SAFE_TYPE_PREFIXES`` (the list the lifecycle uses when
it saves), never against the list the MLmodel file brings along. Pickle and cloudpickle (and skops files holding
other types) are loaded only when ``MLOPS_TRUST_PICKLE=1``.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.errors import RegistryError, UnsafeModelError

log = logging.getLogger("mlops.registry.loading")

SKOPS = "skops"
ALLOWED_FORMATS = (SKOPS,)
# Modules whose types may be loaded from a skops file without running arbitrary code (also what training checks
# before choosing skops, so every version the lifecycle saves passes this check).
SAFE_TYPE_PREFIXES = ("numpy.", "sklearn.", "scipy.", "builtins.")
# Builtins that are functions a pipeline could be made to call on the caller's input (a FunctionTransformer(eval)):
# never trusted, whatever their prefix.
_UNSAFE_BUILTINS = ("eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "breakpoint")
UNSAFE_TYPES = frozenset(f"builtins.{name}" for name in (*_UNSAFE_BUILTINS, "input"))


def model_uri(model_name: str, version: str) -> str:
    return f"models:/{model_name}/{version}"


def is_trusted_type(type_name: str) -> bool:
    """Whether a type named in a skops file may be loaded without trusting the registry's writers."""
    return type_name.startswith(SAFE_TYPE_PREFIXES) and type_name not in UNSAFE_TYPES


@dataclass(frozen=True)
class LoadedVersion:
    """A version's fitted pipeline and what its MLmodel file says about it."""

    model_name: str
    version: str
    run_id: str | None
    serialization_format: str
    model: Any
    signature: Any  # mlflow.models.ModelSignature | None


def load_model(client: MlflowClient, model_name: str, version: str, *, trust_pickle: bool = False) -> Any:
    """The fitted pipeline of ``model_name`` version ``version`` (see ``load_version``)."""
    return load_version(client, model_name, version, trust_pickle=trust_pickle).model


def load_version(client: MlflowClient, model_name: str, version: str, *, trust_pickle: bool = False) -> LoadedVersion:
    """Download the version's artifact, check its format, load it, and check it is the version asked for.

    Raises ``UnsafeModelError`` (nothing deserialized) when the format is not allowed, and ``RegistryError`` when the
    version is missing or its artifact belongs to another run.
    """
    from mlflow.artifacts import download_artifacts

    try:
        mv = client.get_model_version(model_name, str(version))
    except MlflowException as err:
        raise RegistryError(f"model {model_name!r} has no version {version}: {err.message}") from None
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        try:
            local = Path(download_artifacts(artifact_uri=model_uri(model_name, str(version)), dst_path=tmp))
        except (MlflowException, OSError) as err:
            raise RegistryError(
                f"cannot read the artifact of {model_name!r} version {version}: {err}. If the project home was "
                "moved, open it through mlops (it rewrites the stored locations) or check MLFLOW_TRACKING_URI."
            ) from None
        loaded = _load_local(local, model_name, str(version), trust_pickle)
    if mv.run_id and loaded.run_id and loaded.run_id != mv.run_id:
        raise RegistryError(
            f"the artifact of {model_name!r} version {version} was logged by run {loaded.run_id}, but the version "
            f"was registered from run {mv.run_id}: refusing a model that is not the one asked for. "
            "Register the model again from its run."
        )
    return loaded


def _load_local(local: Path, model_name: str, version: str, trust_pickle: bool) -> LoadedVersion:
    from mlflow.models import Model

    try:
        meta = Model.load(str(local / "MLmodel"))
    except Exception as err:
        raise RegistryError(f"{model_name!r} version {version} has no readable MLmodel file: {err}") from None
    flavor = meta.flavors.get("sklearn")
    if flavor is None:
        raise UnsafeModelError(model_name, version, "not an sklearn model (no sklearn flavour)", [])
    fmt = str(flavor.get("serialization_format", "pickle"))
    path = (local / str(flavor.get("pickled_model", ""))).resolve()
    if not path.is_file() or not path.is_relative_to(local.resolve()):
        raise RegistryError(f"{model_name!r} version {version}: its MLmodel file names no model file inside it")
    if fmt == SKOPS:
        model = _load_skops(path, model_name, version, trust_pickle)
    elif trust_pickle:
        log.warning("loading %s v%s stored as %s: MLOPS_TRUST_PICKLE is set", model_name, version, fmt)
        model = _load_pickle(path, fmt)
    else:
        raise UnsafeModelError(model_name, version, fmt, [])
    return LoadedVersion(model_name, version, meta.run_id, fmt, model, meta.signature)


def _load_skops(path: Path, model_name: str, version: str, trust_pickle: bool) -> Any:
    import skops.io

    present = skops.io.get_untrusted_types(file=path)  # every non-default type in the file, read without loading it
    untrusted = sorted(t for t in present if not is_trusted_type(t))
    if untrusted and not trust_pickle:
        raise UnsafeModelError(model_name, version, SKOPS, untrusted)
    return skops.io.load(path, trusted=list(present))


def _load_pickle(path: Path, fmt: str) -> Any:
    with path.open("rb") as f:
        if fmt == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(f)
        return pickle.load(f)  # only with MLOPS_TRUST_PICKLE=1, by the operator's explicit choice
