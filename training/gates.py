"""Promotion gates: may a newly trained model become the challenger?

Pure logic, no I/O. Scores are compared in the metric's direction, so "delta" is always "how much better the
challenger is" (positive = better), whether the metric is accuracy (maximize) or RMSE (minimize).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from core.config import GatesConfig, ProjectConfig
from core.errors import MlopsError


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    score: float
    champion_score: float | None
    delta: float | None
    results: list[GateResult]

    @property
    def summary(self) -> str:
        failed = [r for r in self.results if not r.passed]
        if not failed:
            return "passed every gate: " + "; ".join(r.detail for r in self.results)
        return "failed " + "; ".join(f"{r.name} ({r.detail})" for r in failed)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary}


def improvement(score: float, champion: float, direction: Literal["maximize", "minimize"]) -> float:
    return score - champion if direction == "maximize" else champion - score


def evaluate_gates(
    metric: str,
    direction: Literal["maximize", "minimize"],
    score: float,
    champion_score: float | None,
    gates: GatesConfig,
) -> GateDecision:
    results: list[GateResult] = []
    if gates.min_score is not None:
        if direction == "maximize":
            ok = score >= gates.min_score
            results.append(GateResult("min_score", ok, f"{metric} {score:.4f} {'>=' if ok else '<'} {gates.min_score}"))
        else:
            ok = score <= gates.min_score
            results.append(GateResult("min_score", ok, f"{metric} {score:.4f} {'<=' if ok else '>'} {gates.min_score}"))
    delta = None
    if champion_score is None:
        results.append(GateResult("vs_champion", True, "no champion to compare with (first model)"))
    else:
        delta = improvement(score, champion_score, direction)
        ok = delta >= -gates.max_regression - 1e-12
        results.append(
            GateResult(
                "max_regression",
                ok,
                f"{metric} {score:.4f} vs champion {champion_score:.4f}: {delta:+.4f}, "
                f"allowed regression {gates.max_regression}",
            )
        )
        if gates.min_improvement is not None:
            ok = delta >= gates.min_improvement - 1e-12
            results.append(
                GateResult("min_improvement", ok, f"improvement {delta:+.4f}, required {gates.min_improvement:+}")
            )
    return GateDecision(
        passed=all(r.passed for r in results),
        metric=metric,
        score=score,
        champion_score=champion_score,
        delta=delta,
        results=results,
    )


def decide_gates(
    metrics: dict[str, float], champion_metrics: dict[str, float] | None, config: ProjectConfig
) -> GateDecision:
    """The gates of ``config`` on the new model's and the champion's holdout metrics (same rows)."""
    metric = config.evaluation.primary_metric
    if metric not in metrics:
        raise MlopsError(
            f"primary metric {metric!r} could not be computed for {config.training.estimator} "
            "(roc_auc and log_loss need predict_proba); choose another evaluation.primary_metric."
        )
    return evaluate_gates(
        metric,
        config.evaluation.resolved_direction,
        metrics[metric],
        (champion_metrics or {}).get(metric),
        config.gates,
    )
