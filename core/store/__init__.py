"""The project's own durable store: the schema (``schema``) and the queries over it, one module per concern."""
