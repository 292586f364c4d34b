"""A project store from before rollouts recorded their challenger's request is refused until `mlops db upgrade`
(``core.store.database.upgrade``) gives it the column; its rollouts stay readable (with no request id)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from core.errors import StoreSchemaError
from core.store.database import upgrade
from core.store.rollouts import RolloutStore
from core.store.schema import close_engine
from tests.store_history import previous_release_store


def test_an_older_store_gains_the_challenger_request_column_by_upgrading(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    previous_release_store(url)  # rollout 1: model m, version 1 -> 2, aborted
    with pytest.raises(StoreSchemaError, match="run `mlops db upgrade`"):
        RolloutStore(url)
    upgrade(url)

    reopened = RolloutStore(url)
    assert "challenger_request_id" in {c["name"] for c in inspect(reopened.engine).get_columns("rollouts")}
    assert reopened.get(1).challenger_request_id is None
    new = reopened.start("m", "canary", "2", "3", 5.0, {}, "after", challenger_request_id=7)
    assert reopened.get(new.id).challenger_request_id == 7
    assert [r.id for r in reopened.for_version("m", "2")] == [1, new.id]
    close_engine(url)
