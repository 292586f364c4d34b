"""The ``mlops`` command as a user runs it: a real subprocess, a temporary project home, real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEMO_CONFIG, ISOLATED_ENV, REPO

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, home: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ISOLATED_ENV and not k.startswith("PREFECT_")}
    # PYTHONPATH: the `mlops` script would otherwise import the checkout the virtualenv was installed from
    clean.update({"MLOPS_HOME": str(home), "COLUMNS": "200", "PYTHONPATH": str(REPO), **env})
    return subprocess.run([MLOPS, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=timeout)


def test_help_is_everywhere(cli_home: Path) -> None:
    for cmd in (
        [],
        ["request"],
        ["request", "submit"],
        ["registry", "compare"],
        ["run"],
        ["monitor"],
        ["retrain"],
        ["rollback"],
        ["trail"],
        ["demo"],
        ["ui"],
        ["serve"],
        ["rollout"],
        ["rollout", "start"],
        ["replay"],
        ["k8s", "render"],
        ["db"],
        ["db", "upgrade"],
        ["db", "current"],
    ):
        result = mlops(*cmd, "--help", home=cli_home)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout


def test_requests_are_submitted_validated_and_listed_in_priority_order(cli_home: Path) -> None:
    assert (
        mlops(
            "request", "submit", "--kind", "minor", "--title", "Tune C", "--set", "training.params.C=0.5", home=cli_home
        ).returncode
        == 0
    )
    assert mlops("request", "submit", "-k", "hotfix", "-t", "Fix", "-r", "broken", home=cli_home).returncode == 0
    listed = json.loads(mlops("request", "list", "--json", home=cli_home).stdout)
    assert [(r["kind"], r["status"]) for r in listed] == [("hotfix", "queued"), ("minor", "queued")]
    assert listed[1]["overrides"] == {"training.params.C": 0.5}
    table = mlops("request", "list", home=cli_home).stdout
    assert "Tune C" in table and "hotfix" in table


def test_request_files_are_accepted(cli_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "req.yaml"
    path.write_text("kind: major\ntitle: New features\nreason: ticket ML-42\noverrides:\n  gates.min_score: 0.8\n")
    result = mlops("request", "submit", "--file", str(path), "--json", home=cli_home)
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    assert (stored["kind"], stored["reason"], stored["overrides"]) == (
        "major",
        "ticket ML-42",
        {"gates.min_score": 0.8},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "urgent", "--title", "x"], "unknown request kind 'urgent'"),
        (["--kind", "minor", "--title", "x", "--set", "gates.min_scor=1"], "override key 'gates.min_scor' is unknown"),
        (["--kind", "minor", "--title", "x", "--set", "split.test_size=2"], "split.test_size"),
        (["--kind", "minor"], "needs --kind"),
    ],
)
def test_bad_requests_fail_clearly_and_store_nothing(cli_home: Path, args: list[str], message: str) -> None:
    result = mlops("request", "submit", *args, home=cli_home)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert json.loads(mlops("request", "list", "--json", home=cli_home).stdout) == []


def test_config_validate_and_debug_tracebacks(cli_home: Path, tmp_path: Path) -> None:
    ok = mlops("config", "validate", home=cli_home)
    assert ok.returncode == 0 and "30 numeric + 0 categorical" in ok.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text(DEMO_CONFIG.read_text().replace("max_regression:", "max_regresion:"))
    bad = mlops("-c", str(broken), "config", "validate", home=cli_home)
    assert bad.returncode == 2 and "gates.max_regresion: unknown key" in bad.stderr and "Traceback" not in bad.stderr
    debug = mlops("--debug", "-c", str(broken), "config", "validate", home=cli_home)
    assert "Traceback" in debug.stderr


def test_registry_commands_on_an_empty_registry(cli_home: Path) -> None:
    shown = mlops("registry", "show", "--json", home=cli_home)
    assert shown.returncode == 0 and json.loads(shown.stdout)["versions"] == []
    cmp = mlops("registry", "compare", "1", "2", home=cli_home)
    assert cmp.returncode == 1 and "no registered versions yet" in cmp.stderr


@pytest.mark.slow
def test_demo_goes_from_requests_to_a_promotion_and_an_automatic_rollback(cli_home: Path) -> None:
    """The README's first command, minus the install: the whole demo in a subprocess with its own Prefect server,
    gateway and traffic replayer."""
    demo = mlops("demo", home=cli_home, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Stopped by the data validation gate" in demo.stdout
    assert "Demo finished" in demo.stdout
    assert "Traceback" not in demo.stdout + demo.stderr, demo.stdout[-3000:] + demo.stderr[-3000:]
    narrated = demo.stdout  # a surprising registry below is read against what the demo printed (its decisions)

    shown: dict[str, Any] = json.loads(mlops("registry", "show", "--json", home=cli_home).stdout)
    assert [v["semver"] for v in shown["versions"]] == ["1.0.0", "1.1.0", "1.1.1"], narrated
    assert shown["aliases"] == {"champion": "2", "previous": "1"}  # 1.1.0 promoted, 1.1.1 rolled back
    moves = [(h["alias"], h["from_version"], h["to_version"]) for h in shown["alias_history"]]
    assert moves == [
        ("champion", None, "1"),
        ("challenger", None, "2"),
        ("previous", None, "1"),
        ("champion", "1", "2"),
        ("challenger", "2", None),
        ("challenger", None, "3"),
        ("challenger", "3", None),
    ]
    rolled_back = shown["versions"][2]["tags"]
    assert rolled_back["mlops.decision"] == "rolled back" and "quality guard" in rolled_back["mlops.decision_reason"]
    requests = json.loads(mlops("request", "list", "--json", home=cli_home).stdout)
    assert sorted(r["status"] for r in requests) == ["failed", "succeeded", "succeeded", "succeeded"]

    cmp = json.loads(mlops("registry", "compare", "previous", "champion", "--json", home=cli_home).stdout)
    assert cmp["same_data"] is True
    assert {m["metric"] for m in cmp["metrics"]} >= {"accuracy", "roc_auc", "f1"}
    status = json.loads(mlops("rollout", "status", "--json", home=cli_home).stdout)
    assert status["status"] == "aborted" and status["challenger_version"] == "3"

    again = mlops("demo", home=cli_home)
    assert again.returncode == 2 and "mlops demo --reset" in again.stderr
    # the Prefect database of the runs lives in the home, where `mlops ui` will look
    assert (cli_home / "prefect" / "prefect.db").exists()


def test_rollout_commands_explain_what_is_missing(cli_home: Path) -> None:
    status = mlops("rollout", "status", home=cli_home)
    assert status.returncode == 0 and "No rollout" in status.stdout
    start = mlops("rollout", "start", "--no-wait", home=cli_home)
    assert start.returncode == 1 and "has no champion" in start.stderr
    abort = mlops("rollout", "abort", home=cli_home)
    assert abort.returncode == 1 and "no rollout in progress" in abort.stderr
