"""Two ``mlops rollout start`` processes at once on the same store: exactly one rollout goes live, the other command
is refused with a message naming the live rollout and the commands that finish it; on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import select

from core.config import ProjectConfig
from core.store.schema import get_engine, rollouts
from tests.conftest import REPO
from tests.gateway_fixtures import register
from tests.reliability.test_interrupted_request import environment


@pytest.mark.timeout(180)
def test_two_rollout_starts_at_once_give_one_live_rollout_and_name_it_to_the_other(
    settings: Any, demo_config: ProjectConfig, any_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DATABASE_URL", any_store_url)
    from core.settings import get_settings

    register(get_settings(), demo_config, "1.0.0", "champion")
    challenger = register(get_settings(), demo_config, "1.1.0", "challenger", C=0.5)
    env = environment(settings.home_dir, MLOPS_DATABASE_URL=any_store_url)
    starts = [
        subprocess.Popen(
            [sys.executable, "-m", "mlops.cli", "rollout", "start", "--no-wait"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=150), *p.communicate()) for p in starts]

    with get_engine(any_store_url).connect() as conn:
        rows = conn.execute(select(rollouts.c.id, rollouts.c.status, rollouts.c.challenger_version)).all()
    assert [(status, version) for _, status, version in rows] == [("running", challenger)]
    live = rows[0][0]
    won = [r for r in results if r[0] == 0]
    lost = [r for r in results if r[0] != 0]
    assert len(won) == 1 and len(lost) == 1, results
    assert f"Rollout #{live} started" in won[0][1]
    refusal = lost[0][2]
    assert f"already has rollout #{live} in progress" in refusal, refusal[-2000:]
    assert "mlops rollout approve" in refusal and "mlops rollout abort" in refusal
    assert "Traceback" not in refusal
