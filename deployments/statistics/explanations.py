"""The sentences a person reads in the rollout log, the Prefect artifact and MLflow: each verdict in words."""

from __future__ import annotations

from typing import Literal, Protocol

Decision = Literal["continue", "abort", "pass"]


class SequentialTest(Protocol):
    """What an explanation needs to know about the test that decided."""

    alpha: float
    beta: float
    min_effect: float
    min_samples: int
    max_samples: int | None
    metric: str
    unit: str

    @property
    def upper_threshold(self) -> float: ...

    @property
    def lower_threshold(self) -> float: ...


def points(fraction: float) -> str:
    return f"{fraction * 100:.4g}"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def signed_points(fraction: float) -> str:
    return f"{fraction * 100:+.1f}"


def explain_sequential(
    test: SequentialTest,
    decision: Decision,
    truncated: bool,
    llr: float,
    rate1: float | None,
    n1: int,
    rate2: float | None,
    n2: int,
) -> str:
    """One sequential verdict in words: the rates, what was decided and why, and what happens next."""
    chall = f"{rate1:.3f} on {n1} {test.unit}" if rate1 is not None else f"not measured yet (0 {test.unit})"
    champ = f"{rate2:.3f} on {n2}" if rate2 is not None else f"not measured yet (0 {test.unit})"
    facts = f"Challenger {test.metric} {chall} vs champion {champ}"
    effect = f"{points(test.min_effect)} points worse"
    if decision == "abort":
        return (
            f"{facts}: the evidence that it is at least {effect} crossed the {percent(1 - test.alpha)} "
            "threshold; roll back."
        )
    if decision == "pass" and truncated:
        return (
            f"{facts}: the budget of {test.max_samples} challenger {test.unit} is spent without evidence that it "
            f"is {effect} (log-likelihood ratio {llr:.2f}, roll back at {test.upper_threshold:.2f}); passing, "
            f"though a drop smaller than {points(test.min_effect)} points cannot be ruled out."
        )
    if decision == "pass":
        return (
            f"{facts}: the evidence that it is not {effect} crossed the threshold (a real "
            f"{points(test.min_effect)}-point drop would have been caught {percent(1 - test.beta)} of the time); "
            "the rollout may proceed."
        )
    if n1 < test.min_samples or n2 < test.min_samples:
        return (
            f"{facts}: waiting for at least {test.min_samples} {test.unit} on each model before deciding; "
            "keep the rollout going."
        )
    return (
        f"{facts}: not enough evidence yet either way (log-likelihood ratio {llr:.2f}; roll back at "
        f"{test.upper_threshold:.2f}, pass at {test.lower_threshold:.2f}); keep collecting {test.unit}."
    )
