"""The floor every other package stands on: settings, the config schema, typed errors, the names of aliases, tags
and events, the project store (schema and queries) and MLflow set-up. It imports no other first-party package.

Importing it reads and writes nothing.
"""

__version__ = "0.1.0"
