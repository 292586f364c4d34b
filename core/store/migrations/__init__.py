"""The project store's Alembic migrations, shipped inside the package and run by ``core.store.database`` (no
``alembic.ini``: the configuration is built in code). ``versions/`` holds one file per schema revision, oldest
first: ``0001`` the schema of the last release before migrations, ``0002`` the current one.

Adding a revision: change ``core/store/schema.py``, then write ``versions/000N_<what>.py`` with ``revision = "000N"``
and ``down_revision`` the previous one (``script.py.mako`` is the template; ``tests/unit/test_migrations.py`` fails
while the migrations and ``schema.py`` disagree).
"""
