"""Typed errors. Each says what went wrong and how to fix it; the CLI prints them without a traceback.

The taxonomy follows the source chapter 14.3 (data, model, configuration, infrastructure) so a failure can be
classified and recorded with its category on the change request and in MLflow.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class: ``str(err)`` is a complete sentence a user can act on."""

    category = "software"
    exit_code = 1


class ConfigError(MlopsError):
    """The project configuration or an override is invalid."""

    category = "configuration"
    exit_code = 2


class RequestError(MlopsError):
    """A change request is malformed, unknown or in the wrong state."""

    category = "configuration"
    exit_code = 2


class DataError(MlopsError):
    """The data could not be read or does not have the declared shape."""

    category = "data"


class ValidationFailed(DataError):
    """Great Expectations rejected the data; ``failures`` lists each failed expectation in words."""

    def __init__(self, message: str, failures: list[str], report_uri: str | None = None) -> None:
        super().__init__(message)
        self.failures = failures
        self.report_uri = report_uri


class TrainingError(MlopsError):
    """The estimator could not be built or fitted."""

    category = "model"


class RegistryError(MlopsError):
    """The model registry is missing something asked for, or refused a change."""

    category = "infrastructure"


class OrchestrationError(MlopsError):
    """The Prefect API is unreachable, a deployment is missing, or a deployed run ended without an outcome."""

    category = "infrastructure"


class NotFoundError(MlopsError):
    """An id the user gave (version, semver, request) matches nothing; the message lists the ids that exist."""

    category = "configuration"
    exit_code = 2
