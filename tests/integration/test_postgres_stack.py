"""The closed loop on PostgreSQL behind credentials: `mlops demo --full --database-url postgresql://... --secure` puts
the project store, MLflow and Prefect on PostgreSQL (`mlops up`), both servers refuse calls without credentials, and
the loop works with them: a bootstrap, drifted traffic, the deployed monitor, a retrain through the deployed
lifecycle flow on the worker, its canary promotion, then a degradation rollback. PostgreSQL at
MLOPS_TEST_POSTGRES_URL (CI sets it)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ISOLATED_ENV, REPO
from tests.integration.test_ui_and_deployment import BIN, free_port

PG = os.environ.get("MLOPS_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # the whole loop, as slow as a busy host makes it (the demo itself stops at 900 s)
    pytest.mark.postgres,
    pytest.mark.skipif(not PG, reason="MLOPS_TEST_POSTGRES_URL is not set"),
]


def status(url: str, auth: str | None = None, data: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _sql(statement: str) -> list[tuple[object, ...]]:
    import psycopg2

    conn = psycopg2.connect(PG)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def test_the_closed_loop_on_postgres_behind_credentials(tmp_path: Path) -> None:
    assert PG
    db = f"mlops_up_{uuid.uuid4().hex[:8]}"
    _sql(f"CREATE DATABASE {db}")
    url = PG.rsplit("/", 1)[0] + f"/{db}"
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    env |= {"MLOPS_HOME": str(home), "COLUMNS": "200"}
    pp, mp, gp = free_port(), free_port(), free_port()
    ports = ["--prefect-port", str(pp), "--mlflow-port", str(mp), "--gateway-port", str(gp)]

    def mlops(*args: str, timeout: float = 600, **extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / "mlops"), *args]
        return subprocess.run(cmd, cwd=REPO, env=env | extra, capture_output=True, text=True, timeout=timeout)

    try:
        demo = mlops("demo", "--full", "--keep-running", "--database-url", url, "--secure", *ports, timeout=900)
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        creds = json.loads((home / "credentials.json").read_text())
        assert oct((home / "credentials.json").stat().st_mode)[-3:] == "600"
        prefect, mlflow = f"http://127.0.0.1:{pp}/api", f"http://127.0.0.1:{mp}"
        assert status(f"{prefect}/flows/filter", data=b"{}") == 401
        assert status(f"{prefect}/flows/filter", creds["prefect_auth"], b"{}") == 200
        search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=5"
        assert status(search) == 401
        assert status(search, f"{creds['mlflow_user']}:{creds['mlflow_password']}") == 200
        assert status(search, f"{creds['mlflow_user']}:wrong") == 401
        # the whole loop ran on the three PostgreSQL databases: the bootstrap and the drift retrain (deployed
        # lifecycle on the worker), the canary that promoted it, then the degradation rollback to version 1
        requests = _sql_in(db, "SELECT submitted_by, status, semver FROM change_requests ORDER BY id")
        assert [(r[1], r[2]) for r in requests] == [("succeeded", "1.0.0"), ("succeeded", "1.1.0")], requests
        assert requests[1][0] == "retrain flow"
        assert _sql_in(db, "SELECT status FROM rollouts") == [("promoted",)]
        assert _sql_in(f"{db}_mlflow", "SELECT count(*) FROM model_versions") == [(2,)]
        assert _sql_in(f"{db}_mlflow", "SELECT alias, version FROM registered_model_aliases") == [("champion", 1)]
        assert _sql_in(f"{db}_prefect", "SELECT count(*) FROM deployment") == [(5,)]
        assert status(f"http://127.0.0.1:{gp}/readyz") == 200
        assert not (home / "mlflow.db").exists() and not (home / "mlops.db").exists()  # nothing fell back to SQLite
    finally:
        down = mlops("down", timeout=120)
        for name in (db, f"{db}_mlflow", f"{db}_prefect"):
            _sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert down.returncode == 0


def _sql_in(database: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg2

    assert PG
    conn = psycopg2.connect(PG.rsplit("/", 1)[0] + f"/{database}")
    with conn.cursor() as cur:
        cur.execute(statement)
        rows = cur.fetchall()
    conn.close()
    return rows
