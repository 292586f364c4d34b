"""Prediction log and rollout state on the real store: SQLite always, PostgreSQL when MLOPS_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from core.errors import MlopsError
from core.store.predictions import PredictionLog, encode_value
from core.store.rollouts import RolloutStore
from core.store.schema import utcnow

pytestmark = pytest.mark.postgres


def test_batched_writes_and_per_variant_statistics(any_store_url: str) -> None:
    log = PredictionLog(any_store_url, batch_size=7, flush_interval=0.05).start()
    for i in range(30):
        variant = "challenger" if i % 3 == 0 else "champion"
        status = "fallback" if i == 0 else "ok"
        log.record(request_id=f"r{i}", model_name="m", variant=variant, model_version="2" if i % 3 == 0 else "1",
                   status=status, served=int(status == "ok"), features={"x": i}, prediction=encode_value("yes"),
                   latency_ms=float(i), rollout_id=5)  # fmt: skip
        log.record_feedback(f"r{i}", "yes" if i % 2 == 0 else "no")
    log.record(request_id="other", model_name="m", variant="champion", model_version="1", status="ok", served=1,
               features={}, prediction=encode_value("yes"), latency_ms=1.0, rollout_id=6)  # fmt: skip
    log.close()
    assert log.written == 31 and log.dropped == 0
    stats = PredictionLog(any_store_url).variant_stats("m", 5)
    chall, champ = stats["challenger"], stats["champion"]
    assert (chall.requests, chall.errors, champ.requests, champ.errors) == (10, 1, 20, 0)
    # labels join on request id; a fallback answer is not a challenger prediction to judge
    assert (chall.labelled, chall.correct) == (9, 4)
    assert (champ.labelled, champ.correct) == (20, 10)
    assert champ.latency_p(50) == pytest.approx(15.5, abs=1.0)
    later = PredictionLog(any_store_url).variant_stats("m", 5, since=utcnow() + timedelta(seconds=5))
    assert later == {}


def test_values_compare_in_one_canonical_form() -> None:
    import numpy as np

    assert encode_value(1.0) == encode_value(1) == encode_value(np.int64(1)) == "1"
    assert encode_value("1") == '"1"' and encode_value(np.str_("yes")) == encode_value("yes")


def test_shadow_agreement(any_store_url: str) -> None:
    log = PredictionLog(any_store_url)
    for i in range(10):
        log.record(request_id=f"q{i}", model_name="m", variant="champion", model_version="1", status="ok", served=1,
                   prediction=encode_value("a"), rollout_id=1)  # fmt: skip
        log.record(request_id=f"q{i}", model_name="m", variant="challenger", model_version="2", status="shadow",
                   served=0, prediction=encode_value("a" if i < 7 else "b"), rollout_id=1)  # fmt: skip
    log.flush()
    assert log.agreement("m", 1) == (10, 7)


def test_rollout_state_is_persisted_one_live_rollout_per_model(any_store_url: str) -> None:
    store = RolloutStore(any_store_url)
    r = store.start("m", "canary", "1", "2", 10.0, {"steps": [10, 100]}, "start")
    assert store.live("m") == r and r.served_weight == 10.0
    with pytest.raises(MlopsError, match="already has rollout"):
        store.start("m", "canary", "1", "3", 10.0, {}, "again")
    r2 = store.update(r.id, log_entry={"action": "advance"}, step_index=1, weight=100.0)
    r3 = RolloutStore(any_store_url).update(r.id, log_entry={"action": "promote"}, status="promoted")
    assert (r2.weight, [s["action"] for s in r3.steps], r3.live) == (100.0, ["advance", "promote"], False)
    assert store.live("m") is None and store.latest("m").status == "promoted"  # type: ignore[union-attr]
    paused = store.start("m", "shadow", "2", "4", 0.0, {}, "shadow")
    assert paused.shadow and paused.served_weight == 0.0
    assert store.update(paused.id, status="paused").served_weight == 0.0
    with pytest.raises(MlopsError, match="does not exist"):
        store.get(999)


def test_racing_starts_leave_exactly_one_live_rollout(any_store_url: str) -> None:
    """Four starts released at once: the database's partial unique index lets one win, the others get the clear
    error; without it, check-then-insert lets two through on PostgreSQL under READ COMMITTED."""
    RolloutStore(any_store_url)  # create the tables before the race
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def start(i: int) -> None:
        store = RolloutStore(any_store_url)
        barrier.wait()
        try:
            store.start("m", "canary", "1", str(i + 2), 10.0, {}, f"racer {i}")
            outcome = "started"
        except MlopsError as err:
            outcome = "refused" if "already has rollout" in str(err) else str(err)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    assert RolloutStore(any_store_url).live("m") is not None


def test_labelled_answers_are_counted_once_however_many_label_rows(any_store_url: str) -> None:
    """Two gateway workers racing, or corrections: an answer with several labels counts once, with the first label
    (or the last with corrections on); the label rows themselves are kept."""
    log = PredictionLog(any_store_url)
    for i in range(4):
        log.record(request_id=f"d{i}", model_name="m", variant="challenger", model_version="2", status="ok", served=1,
                   prediction=encode_value("yes"), latency_ms=1.0, rollout_id=9)  # fmt: skip
    for label in ("yes", "no", "no", "no"):  # one answer, four labels
        log.record_feedback("d0", label)
    log.record_feedback("d1", "no")
    log.record_feedback("d1", "yes")  # corrected
    log.flush()
    first = PredictionLog(any_store_url).variant_stats("m", 9)["challenger"]
    assert (first.labelled, first.correct) == (2, 1)
    last = PredictionLog(any_store_url, corrections=True).variant_stats("m", 9)["challenger"]
    assert (last.labelled, last.correct) == (2, 1)  # d0 last "no", d1 last "yes"
    issued, labels = PredictionLog(any_store_url).lookup(["d0", "d1", "d2", "never"])
    assert issued == {"d0", "d1", "d2"} and labels == {"d0": '"yes"', "d1": '"no"'}
    assert PredictionLog(any_store_url, corrections=True).lookup(["d1"])[1] == {"d1": '"yes"'}


def test_timed_answers_for_the_latency_guard_one_per_request(any_store_url: str) -> None:
    log = PredictionLog(any_store_url)
    at = utcnow()
    for i in range(3):  # one request of three records: one timed answer
        log.record(request_id=f"abc-{i}", model_name="m", variant="champion", model_version="1", status="ok",
                   served=1, latency_ms=4.0, rollout_id=3, at=at)  # fmt: skip
    log.record(request_id="def", model_name="m", variant="challenger", model_version="2", status="timeout", served=0,
               latency_ms=260.0, rollout_id=3, at=at, detail="deadline 250 ms, elapsed 260.0 ms")  # fmt: skip
    log.record(request_id="ghi", model_name="m", variant="challenger", model_version="2", status="error", served=0,
               rollout_id=3, at=at, detail="RuntimeError: boom")  # fmt: skip
    log.flush()
    rows = log.latency_rows("m", 3)
    assert sorted(zip(rows["request"], rows["variant"], rows["latency_ms"], strict=True)) == [
        ("abc", "champion", 4.0),
        ("def", "challenger", 260.0),
    ]
    start = dict(zip(rows["request"], rows["start"], strict=True))
    assert start["abc"] - start["def"] == pytest.approx(0.256, abs=1e-3)  # start = completion - latency
    assert log.failure_details("m", 3, "challenger") == {
        "error": "RuntimeError: boom",
        "timeout": "deadline 250 ms, elapsed 260.0 ms",
    }
    stats = log.variant_stats("m", 3)["challenger"]
    assert (stats.errors, stats.timeouts, stats.exceptions) == (2, 1, 1)


def test_absolute_errors_of_a_regressor_are_summed_once_per_labelled_answer(any_store_url: str) -> None:
    log = PredictionLog(any_store_url)
    for i, (pred, label) in enumerate([(10.0, 12.5), (3, 1), (7.25, 7.25), (100.0, None)]):
        log.record(request_id=f"g{i}", model_name="m", variant="challenger", model_version="2", status="ok", served=1,
                   prediction=encode_value(pred), latency_ms=1.0, rollout_id=4)  # fmt: skip
        if label is not None:
            log.record_feedback(f"g{i}", label)
    log.record_feedback("g0", 0.0)  # a second label: the first counts
    log.flush()
    chall = PredictionLog(any_store_url).variant_stats("m", 4, regression=True)["challenger"]
    assert chall.abs_errors == (3, pytest.approx(4.5), pytest.approx(2.5**2 + 2**2))
    assert chall.to_json()["mean_absolute_error"] == pytest.approx(1.5)


def test_requests_batched_into_one_model_call_are_one_latency_observation(any_store_url: str) -> None:
    log = PredictionLog(any_store_url)
    at = utcnow()
    for i in range(5):  # five requests answered by one call of the champion (same model time)
        log.record(request_id=f"b{i}", model_name="m", variant="champion", status="ok", served=1, latency_ms=5.125,
                   rollout_id=8, at=at)  # fmt: skip
    log.record(request_id="c0", model_name="m", variant="challenger", status="ok", served=1, latency_ms=5.125,
               rollout_id=8, at=at)  # fmt: skip
    for i in range(2):  # two timeouts of separate requests: each its own elapsed time, each an observation
        log.record(request_id=f"t{i}", model_name="m", variant="champion", status="timeout", served=0,
                   latency_ms=251.0, rollout_id=8, at=at)  # fmt: skip
    log.flush()
    rows = log.latency_rows("m", 8)
    assert sorted(zip(rows["variant"], rows["status"], strict=True)) == [
        ("challenger", "ok"),
        ("champion", "ok"),
        ("champion", "timeout"),
        ("champion", "timeout"),
    ]


def test_deadline_misses_are_read_back_with_their_windows_and_classified(any_store_url: str) -> None:
    """A stall recorded in the prediction log (both variants late together) and a challenger miss of its own, as
    ``deployments.rollout.step`` reads and counts them for the error guard."""
    from deployments.rollout import deadline_misses

    log = PredictionLog(any_store_url)
    t0 = utcnow()
    misses = [("champion", 0.00), ("challenger", 0.01), ("champion", 0.02), ("challenger", 5.0)]
    for i, (variant, offset) in enumerate(misses):
        log.record(request_id=f"t{i}", model_name="m", variant=variant, model_version="1", status="timeout",
                   served=0, latency_ms=250.0, rollout_id=3, detail="deadline 250 ms",
                   at=t0 + timedelta(seconds=offset))  # fmt: skip
    log.record(request_id="ok", model_name="m", variant="champion", model_version="1", status="ok", served=1,
               latency_ms=4.0, rollout_id=3, at=t0)  # fmt: skip
    log.flush()
    rows = log.deadline_misses("m", 3)
    assert sorted(rows["variant"]) == ["challenger", "challenger", "champion", "champion"]
    assert (rows["end"] - rows["start"]).round(3).tolist() == [0.25] * 4
    counts = deadline_misses(rows)
    assert (counts["challenger"].total, counts["challenger"].shared, counts["challenger"].episodes) == (2, 1, 1)
    assert (counts["champion"].total, counts["champion"].shared, counts["champion"].episodes) == (2, 2, 0)
    assert deadline_misses(log.deadline_misses("m", 99))["challenger"].total == 0
