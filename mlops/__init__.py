"""The entry points: the ``mlops`` command line, the demo, and the supervisor of the local stack. Nothing else
imports this package; the layers below it are in ``docs/architecture.md``."""

from core import __version__

__all__ = ["__version__"]
