"""Prefect tasks: thin, typed wrappers over the domains (``training``, ``monitoring``, ``deployments``), with retries
where I/O can be flaky; and ``reporting``, the one place the markdown artifacts are rendered."""
