"""The circuit breaker and the evidence it needs to charge a deadline miss to a model (pure objects, no I/O)."""

from __future__ import annotations

from deployments.router import CircuitBreaker, InTimeAnswers


def test_a_miss_is_the_models_fault_only_if_the_other_variant_answered_in_time_inside_its_window() -> None:
    answers = InTimeAnswers()
    answers.add(10.00, 10.01)
    answers.add(10.30, 10.31)
    answers.add(10.90, 10.91)
    assert answers.answered_within(10.20, 10.45)  # the 10.30-10.31 answer ran while this request waited
    assert not answers.answered_within(10.005, 10.255)  # one started before the window, none ran inside it
    assert not answers.answered_within(10.31, 10.56)  # touching the window's start is not inside it
    assert not answers.answered_within(11.0, 11.25)  # a stall: nothing answered in the window
    assert not InTimeAnswers().answered_within(0.0, 100.0)


def test_only_the_newest_answers_are_kept() -> None:
    answers = InTimeAnswers(keep=2)
    for t in (1.0, 2.0, 3.0):
        answers.add(t, t + 0.01)
    assert not answers.answered_within(0.9, 1.5) and answers.answered_within(2.9, 3.5)


def test_host_stalls_do_not_open_a_circuit_but_model_faults_and_exceptions_do() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30.0)
    for _ in range(10):  # a burst of stalls: every request in flight late together
        breaker.deadline_missed(models_fault=False, now=0.0)
    assert breaker.state == "closed" and breaker.allow(now=0.0)
    assert (breaker.excused_misses, breaker.charged_misses, breaker.failures) == (10, 0, 0)
    breaker.deadline_missed(models_fault=True, now=1.0)
    breaker.deadline_missed(models_fault=False, now=1.0)  # excused: neither resets nor adds to the count
    breaker.failure(now=1.0)  # an exception
    assert breaker.state == "closed" and breaker.failures == 2
    breaker.deadline_missed(models_fault=True, now=2.0)
    assert breaker.state == "open" and not breaker.allow(now=2.0)
    assert breaker.to_json() == {
        "state": "open",
        "consecutive_failures": 3,
        "deadline_misses_charged": 2,
        "deadline_misses_excused": 11,
    }


def test_an_excused_miss_ends_a_half_open_trial_without_a_verdict() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=5.0)
    breaker.failure(now=0.0)
    assert breaker.allow(now=6.0) and breaker.state == "half-open"
    breaker.deadline_missed(models_fault=False, now=6.1)
    assert breaker.state == "open" and breaker.allow(now=6.2)  # the next request tries again
    breaker.success()
    assert breaker.state == "closed"
