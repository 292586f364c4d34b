"""The shared services of one model, built once: see ``services.context``."""

from services.context import ProjectContext, open_context

__all__ = ["ProjectContext", "open_context"]
