"""Shared core of the MLOps lifecycle orchestrator: settings, typed errors, configuration, the project store, CLI.

Kept deliberately small: stage logic lives in ``tasks/``, orchestration in ``flows/``, registry logic in
``model_registry/``. Importing this package reads and writes nothing.
"""

__version__ = "0.1.0"
