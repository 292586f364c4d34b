"""Benchmark: how fast the canary's sequential test rolls back a worse challenger, and how often it wrongly does.

Simulates many seeded rollouts per scenario. In each, labelled feedback arrives one request at a time; a request
goes to the challenger with probability ``share`` (10% in a canary), so between two challenger labels the champion
receives a geometric number of labels (9 on average at 10%). After every challenger label the rollout evaluates
``SequentialQualityTest.decision_codes`` on the cumulative counts (the exact code a rollout runs) and stops at the
first ``abort`` or ``pass``; a rollout still undecided after ``--max-labels`` challenger labels is reported as
"continue at cap".

Reference tests run on exactly the same label streams (common random numbers) to put the figures in context:
Wald's SPRT with the champion's accuracy *known* (the yardstick the targets refer to; impossible in production),
the naive plug-in SPRT that substitutes the champion's observed accuracy for the known one, and the profile SPRT
that maximises the likelihood over the champion's accuracy instead of averaging it (both argued against in the
``docs/statistics.md``; the figures show why).

A second table evaluates every strategy the way a rollout now runs it, after *every* label whichever model it went
to, stopping at the first decision: the canary at 5% and 10% and shadow mode with the sequential test (shadow: every
label judges both models on the same input, so their outcomes are correlated), the A/B split with its always-valid
interval (``statistics.always_valid``; abort below 0, promote above 0 or above ``-min_effect``, after 100 labels per
arm), and, for reference, the A/B rule it replaced (a fixed-horizon z-test re-run at every look).

Usage (from the repository root)::

    .venv/bin/python benchmarks/rollback_decisions.py [--rollouts 1000] [--seed 0]

Prints a markdown table and writes it with the raw figures to ``benchmarks/results/rollback_decisions.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a plain script from the repository root
    sys.path.insert(0, str(REPO))

from deployments.statistics import (  # noqa: E402
    ABORT,
    CONTINUE,
    PASS,
    SequentialMAETest,
    SequentialQualityTest,
    profile_log_likelihood_ratio,
    wald_expected_sample_size,
    wilson_interval,
)

CHAMPION = 0.90
WORSE = 0.85
TARGET_RATIO = 1.3
TARGET_FALSE_ROLLBACK = 0.05
TEST = SequentialQualityTest(alpha=0.05, beta=0.20, min_effect=0.05, min_samples=20)

Floats = npt.NDArray[np.float64]
Codes = npt.NDArray[np.int8]
Decider = Callable[[float, Floats, Floats, Floats, Floats], Codes]  # (true champion accuracy, counts...) -> codes


def weighted_decider(champion: float, s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """The production test: SequentialQualityTest.decision_codes, champion accuracy unknown (averaged over)."""
    return TEST.decision_codes(s1, n1, s2, n2)


def _wald_rule(llr: Floats, ready: npt.NDArray[np.bool_]) -> Codes:
    codes = np.full(llr.shape, CONTINUE, dtype=np.int8)
    codes[ready & (llr >= TEST.upper_threshold)] = ABORT
    codes[ready & (llr <= TEST.lower_threshold)] = PASS
    return codes


def _both_ready(n1: Floats, n2: Floats) -> npt.NDArray[np.bool_]:
    ready: npt.NDArray[np.bool_] = (n1 >= TEST.min_samples) & (n2 >= TEST.min_samples)
    return ready


def known_decider(champion: float, s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """Reference: Wald's SPRT with the champion's accuracy known exactly (champion labels unused)."""
    p0, p1 = champion, champion - TEST.min_effect
    llr = s1 * math.log(p1 / p0) + (n1 - s1) * math.log((1 - p1) / (1 - p0))
    return _wald_rule(llr, n1 >= TEST.min_samples)


def plugin_decider(champion: float, s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """Reference: Wald's SPRT with the champion's observed accuracy plugged in as if it were known."""
    eps = 1e-9
    p0 = np.clip(s2 / np.maximum(n2, 1), TEST.min_effect + eps, 1 - eps)
    p1 = p0 - TEST.min_effect
    llr = s1 * np.log(p1 / p0) + (n1 - s1) * np.log((1 - p1) / (1 - p0))
    return _wald_rule(llr, _both_ready(n1, n2))


def profile_decider(champion: float, s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """Reference: the champion's accuracy maximised out (profile likelihood) instead of averaged."""
    return _wald_rule(profile_log_likelihood_ratio(s1, n1, s2, n2, TEST.min_effect), _both_ready(n1, n2))


DECIDERS: dict[str, tuple[str, Decider]] = {
    "weighted": ("weighted SPRT, champion estimated (production)", weighted_decider),
    "known": ("Wald SPRT, champion known (reference)", known_decider),
    "plugin": ("naive plug-in SPRT (reference)", plugin_decider),
    "profile": ("profile (maximised) SPRT (reference)", profile_decider),
}


@dataclass(frozen=True)
class Scenario:
    name: str  # "worse" or "equal"
    champion: float
    challenger: float
    share: float  # probability that a labelled request went to the challenger
    test: str  # key of DECIDERS
    target: bool = False  # one of the two scenarios the targets are stated for

    @property
    def precise(self) -> bool:
        """The canary-10% rows at 0.90: the target scenarios and, on the same label streams, their references."""
        return self.target or (self.share, self.champion) == (0.10, CHAMPION)

    @property
    def traffic(self) -> str:
        return "50/50" if self.share == 0.5 else f"canary {self.share:.0%}"


SCENARIOS = [
    Scenario("worse", CHAMPION, WORSE, 0.10, "weighted", target=True),
    Scenario("equal", CHAMPION, CHAMPION, 0.10, "weighted", target=True),
    Scenario("worse", CHAMPION, WORSE, 0.50, "weighted"),
    Scenario("equal", CHAMPION, CHAMPION, 0.50, "weighted"),
    Scenario("worse", CHAMPION, WORSE, 0.05, "weighted"),
    Scenario("equal", CHAMPION, CHAMPION, 0.05, "weighted"),
    Scenario("worse", CHAMPION, WORSE, 0.10, "known"),
    Scenario("equal", CHAMPION, CHAMPION, 0.10, "known"),
    Scenario("worse", CHAMPION, WORSE, 0.10, "plugin"),
    Scenario("equal", CHAMPION, CHAMPION, 0.10, "plugin"),
    Scenario("worse", CHAMPION, WORSE, 0.50, "plugin"),
    Scenario("equal", CHAMPION, CHAMPION, 0.50, "plugin"),
    Scenario("worse", CHAMPION, WORSE, 0.10, "profile"),
    Scenario("equal", CHAMPION, CHAMPION, 0.10, "profile"),
    # Where the champion's uncertainty matters most (50/50) at a high accuracy: averaging vs maximising.
    Scenario("equal", 0.95, 0.95, 0.50, "weighted"),
    Scenario("equal", 0.95, 0.95, 0.50, "profile"),
]


def simulate(
    scenario: Scenario, rollouts: int, max_labels: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """Run ``rollouts`` rollouts; return challenger labels used, decision code and champion labels at the end."""
    decide = DECIDERS[scenario.test][1]
    used = np.full(rollouts, max_labels, dtype=np.int64)
    champion_used = np.zeros(rollouts, dtype=np.int64)
    decision = np.full(rollouts, CONTINUE, dtype=np.int8)
    s1 = np.zeros(rollouts)
    s2 = np.zeros(rollouts)
    n2 = np.zeros(rollouts)
    active = np.arange(rollouts)
    done, block = 0, 128
    while active.size and done < max_labels:
        k, width = active.size, min(block, max_labels - done)
        # Draw for every rollout, active or not, so that each rollout's label stream does not depend on when the
        # others stopped: every test sees exactly the same traffic (common random numbers, a paired comparison).
        challenger_hits = (rng.random((rollouts, width)) < scenario.challenger)[active]
        gaps = rng.geometric(scenario.share, size=(rollouts, width)) - 1  # champion labels before each challenger one
        champion_hits = rng.binomial(gaps, scenario.champion)[active]
        gaps = gaps[active]
        c_s1 = s1[active, None] + np.cumsum(challenger_hits, axis=1)
        c_n1 = np.broadcast_to(done + np.arange(1, width + 1, dtype=np.float64), (k, width))
        c_s2 = s2[active, None] + np.cumsum(champion_hits, axis=1)
        c_n2 = n2[active, None] + np.cumsum(gaps, axis=1)
        codes = decide(scenario.champion, c_s1, c_n1, c_s2, c_n2)
        stopped = codes != CONTINUE
        hit = stopped.any(axis=1)
        first = stopped.argmax(axis=1)[hit]
        rows = active[hit]
        decision[rows] = codes[hit, first]
        used[rows] = done + first + 1
        champion_used[rows] = c_n2[hit, first].astype(np.int64)
        s1[active], s2[active], n2[active] = c_s1[:, -1], c_s2[:, -1], c_n2[:, -1]
        champion_used[active[~hit]] = c_n2[~hit, -1].astype(np.int64)
        active = active[~hit]
        done += width
        block = min(block * 2, 1024)
    return used, decision, champion_used


def summarise(scenario: Scenario, rollouts: int, max_labels: int, rng: np.random.Generator) -> dict[str, Any]:
    started = time.perf_counter()
    used, decision, champion_used = simulate(scenario, rollouts, max_labels, rng)
    wald = wald_expected_sample_size(CHAMPION, WORSE, TEST.alpha, TEST.beta)
    aborted = decision == ABORT
    decided = decision != CONTINUE
    n_abort = int(aborted.sum())
    low, high = wilson_interval(n_abort, rollouts, 0.95)
    to_abort = used[aborted]
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "test": scenario.test,
        "test_description": DECIDERS[scenario.test][0],
        "champion_accuracy": scenario.champion,
        "challenger_accuracy": scenario.challenger,
        "challenger_share": scenario.share,
        "traffic": scenario.traffic,
        "target_scenario": scenario.target,
        "rollouts": rollouts,
        "aborted": n_abort,
        "passed": int((decision == PASS).sum()),
        "continue_at_cap": int((~decided).sum()),
        "abort_rate": n_abort / rollouts,
        "abort_rate_ci95": [low, high],
        "labels_to_abort_mean": float(to_abort.mean()) if n_abort else None,
        "labels_to_abort_median": float(np.median(to_abort)) if n_abort else None,
        "labels_to_abort_p90": float(np.percentile(to_abort, 90)) if n_abort else None,
        # Monte-Carlo standard error of the mean: the figure's own uncertainty, to compare with a target's margin.
        "labels_to_abort_se": float(to_abort.std(ddof=1) / math.sqrt(n_abort)) if n_abort > 1 else None,
        "labels_to_decision_mean": float(used.mean()),  # undecided rollouts count as max_labels
        "champion_labels_at_end_mean": float(champion_used.mean()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if scenario.name == "worse" and (scenario.champion, scenario.challenger) == (CHAMPION, WORSE):
        row["ratio_abort_to_wald"] = row["labels_to_abort_mean"] / wald.under_h1 if n_abort else None
        row["ratio_abort_to_wald_se"] = row["labels_to_abort_se"] / wald.under_h1 if n_abort > 1 else None
        row["ratio_decision_to_wald"] = row["labels_to_decision_mean"] / wald.under_h1
    return row


# ---- every strategy, evaluated after every label ----------------------------------------------------------------
AB_MIN_LABELS = 100  # per arm before the A/B's first verdict (the shipped config's min_labels)
SHADOW_CROSS = 0.30  # P(challenger right | champion wrong) in shadow mode, where both models judge the same inputs


@dataclass(frozen=True)
class EveryLabel:
    """A strategy whose decision is re-evaluated after every label, whichever model it went to."""

    strategy: str  # canary | ab | shadow | ab-fixed-horizon (the replaced A/B rule, for reference)
    share: float  # probability that a label belongs to the challenger (shadow: every label judges both)
    champion: float
    challenger: float

    @property
    def name(self) -> str:
        if self.strategy == "canary-regression":  # champion / challenger: mean absolute errors
            return "worse" if self.challenger > self.champion else "equal"
        return "worse" if self.challenger < self.champion else "equal"

    @property
    def traffic(self) -> str:
        if self.strategy == "canary-regression":
            return f"canary {self.share:.0%}, regressor (MAE test)"
        if self.strategy == "shadow":
            return "shadow (paired)"
        if self.strategy.startswith("ab"):
            return "A/B 50/50"
        return f"canary {self.share:.0%}"


EVERY_LABEL = [
    EveryLabel("canary", 0.10, CHAMPION, WORSE),
    EveryLabel("canary", 0.10, CHAMPION, CHAMPION),
    EveryLabel("canary", 0.05, CHAMPION, WORSE),
    EveryLabel("canary", 0.05, CHAMPION, CHAMPION),
    EveryLabel("ab", 0.50, CHAMPION, WORSE),
    EveryLabel("ab", 0.50, CHAMPION, CHAMPION),
    EveryLabel("shadow", 1.0, CHAMPION, WORSE),
    EveryLabel("shadow", 1.0, CHAMPION, CHAMPION),
    EveryLabel("ab-fixed-horizon", 0.50, CHAMPION, CHAMPION),
    EveryLabel("canary-regression", 0.10, 1.0, 1.1),
    EveryLabel("canary-regression", 0.10, 1.0, 1.0),
]


def _ab_codes(s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """The A/B rule of ``rollout_policy``: the always-valid interval for challenger - champion below 0: abort; above 0
    or above -min_effect: promote (here PASS); both arms need AB_MIN_LABELS first."""

    def var(k: Floats, n: Floats) -> Floats:
        p = (k + 1.0) / (n + 2.0)
        out: Floats = p * (1.0 - p) / np.maximum(n, 1.0)
        return out

    v = var(s1, n1) + var(s2, n2)
    t2 = TEST.min_effect**2  # the same interval as statistics.always_valid.half_width, vectorised
    half = np.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / TEST.alpha) + np.log((v + t2) / v)))
    diff = s1 / np.maximum(n1, 1.0) - s2 / np.maximum(n2, 1.0)
    ready = (n1 >= AB_MIN_LABELS) & (n2 >= AB_MIN_LABELS)
    codes = np.full(diff.shape, CONTINUE, dtype=np.int8)
    codes[ready & (diff - half > -TEST.min_effect)] = PASS
    codes[ready & (diff + half < 0)] = ABORT
    return codes


def _ab_fixed_horizon_codes(s1: Floats, n1: Floats, s2: Floats, n2: Floats) -> Codes:
    """The A/B rule this replaces, for reference: a pooled two-proportion z-test at 95% re-run at every look (abort on
    a significant loss, promote on a significant win), next to the sequential quality test (abort / promote)."""
    from scipy import stats

    pooled = (s1 + s2) / np.maximum(n1 + n2, 1.0)
    se = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(n1, 1.0) + 1 / np.maximum(n2, 1.0)))
    diff = s1 / np.maximum(n1, 1.0) - s2 / np.maximum(n2, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        significant = (se > 0) & (2 * stats.norm.sf(np.abs(diff) / np.where(se > 0, se, 1.0)) < 0.05)
    ready = (n1 >= AB_MIN_LABELS) & (n2 >= AB_MIN_LABELS)
    sprt = TEST.decision_codes(s1, n1, s2, n2)
    codes = np.full(diff.shape, CONTINUE, dtype=np.int8)
    codes[(ready & significant & (diff > 0)) | ((sprt == PASS) & (n1 >= AB_MIN_LABELS))] = PASS
    codes[(ready & significant & (diff < 0)) | (sprt == ABORT)] = ABORT
    return codes


def simulate_every_label(
    scenario: EveryLabel, rollouts: int, max_events: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """Labels arrive one at a time; the decision is evaluated after each and the first abort or pass stops the
    rollout. Returns challenger labels and all labels used, and the decision code."""
    decide: Callable[[Floats, Floats, Floats, Floats], Codes] = {
        "canary": TEST.decision_codes,
        "shadow": TEST.decision_codes,
        "ab": _ab_codes,
        "ab-fixed-horizon": _ab_fixed_horizon_codes,
    }[scenario.strategy]
    used_chall = np.zeros(rollouts, dtype=np.int64)
    used_all = np.full(rollouts, max_events, dtype=np.int64)
    decision = np.full(rollouts, CONTINUE, dtype=np.int8)
    s1, n1, s2, n2 = (np.zeros(rollouts) for _ in range(4))
    active = np.arange(rollouts)
    done, block = 0, 64
    while active.size and done < max_events:
        k, width = active.size, min(block, max_events - done)
        if scenario.strategy == "shadow":  # every label judges both models on the same input: correlated outcomes
            champ_ok = rng.random((rollouts, width)) < scenario.champion
            right_if_right = (scenario.challenger - SHADOW_CROSS * (1 - scenario.champion)) / scenario.champion
            chall_ok = np.where(
                champ_ok, rng.random((rollouts, width)) < right_if_right, rng.random((rollouts, width)) < SHADOW_CROSS
            )[active]
            champ_ok = champ_ok[active]
            to_chall = np.ones((k, width), dtype=bool)
            to_champ = to_chall
        else:
            to_chall = (rng.random((rollouts, width)) < scenario.share)[active]
            ok = rng.random((rollouts, width))[active]
            chall_ok = to_chall & (ok < scenario.challenger)
            champ_ok = ~to_chall & (ok < scenario.champion)
            to_champ = ~to_chall
        c_s1 = s1[active, None] + np.cumsum(chall_ok & to_chall, axis=1)
        c_n1 = n1[active, None] + np.cumsum(to_chall, axis=1)
        c_s2 = s2[active, None] + np.cumsum(champ_ok & to_champ, axis=1)
        c_n2 = n2[active, None] + np.cumsum(to_champ, axis=1)
        codes = decide(c_s1, c_n1, c_s2, c_n2)
        stopped = codes != CONTINUE
        hit = stopped.any(axis=1)
        first = stopped.argmax(axis=1)[hit]
        rows = active[hit]
        decision[rows] = codes[hit, first]
        used_all[rows] = done + first + 1
        used_chall[rows] = c_n1[hit, first].astype(np.int64)
        s1[active], n1[active], s2[active], n2[active] = c_s1[:, -1], c_n1[:, -1], c_s2[:, -1], c_n2[:, -1]
        used_chall[active[~hit]] = c_n1[~hit, -1].astype(np.int64)
        active = active[~hit]
        done += width
        block = min(block * 2, 512)
    return used_chall, used_all, decision


REGRESSION_TEST = SequentialMAETest(alpha=0.05, beta=0.20, min_effect_ratio=0.10)


def simulate_regression(
    ratio: float, share: float, rollouts: int, max_events: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int8]]:
    """A regressor's canary: absolute errors |N(0, 1)| for the champion, ``ratio`` times that for the challenger
    (ratio 1.1: a mean absolute error 10% worse); the MAE test after every label, first decision stops."""
    used_chall = np.zeros(rollouts, dtype=np.int64)
    used_all = np.full(rollouts, max_events, dtype=np.int64)
    decision = np.full(rollouts, CONTINUE, dtype=np.int8)
    sums = np.zeros((6, rollouts))  # sum1, sq1, n1, sum2, sq2, n2
    active = np.arange(rollouts)
    done, block = 0, 64
    while active.size and done < max_events:
        width = min(block, max_events - done)
        to_chall = (rng.random((rollouts, width)) < share)[active]
        err = np.abs(rng.normal(0.0, 1.0, (rollouts, width)))[active] * np.where(to_chall, ratio, 1.0)
        c = [
            sums[0, active, None] + np.cumsum(np.where(to_chall, err, 0.0), axis=1),
            sums[1, active, None] + np.cumsum(np.where(to_chall, err * err, 0.0), axis=1),
            sums[2, active, None] + np.cumsum(to_chall, axis=1),
            sums[3, active, None] + np.cumsum(np.where(to_chall, 0.0, err), axis=1),
            sums[4, active, None] + np.cumsum(np.where(to_chall, 0.0, err * err), axis=1),
            sums[5, active, None] + np.cumsum(~to_chall, axis=1),
        ]
        codes = REGRESSION_TEST.decision_codes(*c)
        stopped = codes != CONTINUE
        hit = stopped.any(axis=1)
        first = stopped.argmax(axis=1)[hit]
        rows = active[hit]
        decision[rows] = codes[hit, first]
        used_all[rows] = done + first + 1
        used_chall[rows] = c[2][hit, first].astype(np.int64)
        for i in range(6):
            sums[i, active] = c[i][:, -1]
        used_chall[active[~hit]] = c[2][~hit, -1].astype(np.int64)
        active = active[~hit]
        done += width
        block = min(block * 2, 512)
    return used_chall, used_all, decision


def summarise_every_label(scenario: EveryLabel, rollouts: int, max_events: int, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    traffic = [round(x * 1000) for x in (scenario.champion, scenario.challenger, scenario.share)]
    rng = np.random.default_rng([seed, 7, *traffic, len(scenario.strategy)])
    if scenario.strategy == "canary-regression":
        used_chall, used_all, decision = simulate_regression(
            scenario.challenger / scenario.champion, scenario.share, rollouts, max_events, rng
        )
    else:
        used_chall, used_all, decision = simulate_every_label(scenario, rollouts, max_events, rng)
    wald = wald_expected_sample_size(CHAMPION, WORSE, TEST.alpha, TEST.beta)
    aborted = decision == ABORT
    n_abort = int(aborted.sum())
    low, high = wilson_interval(n_abort, rollouts, 0.95)
    to_abort = used_chall[aborted]
    row: dict[str, Any] = {
        "scenario": scenario.name,
        "strategy": scenario.strategy,
        "traffic": scenario.traffic,
        "champion_accuracy": scenario.champion,
        "challenger_accuracy": scenario.challenger,
        "rollouts": rollouts,
        "aborted": n_abort,
        "passed": int((decision == PASS).sum()),
        "continue_at_cap": int((decision == CONTINUE).sum()),
        "abort_rate": n_abort / rollouts,
        "abort_rate_ci95": [low, high],
        "challenger_labels_to_abort_mean": float(to_abort.mean()) if n_abort else None,
        "challenger_labels_to_abort_se": float(to_abort.std(ddof=1) / math.sqrt(n_abort)) if n_abort > 1 else None,
        "all_labels_to_abort_mean": float(used_all[aborted].mean()) if n_abort else None,
        "all_labels_to_decision_mean": float(used_all.mean()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if scenario.name == "worse" and n_abort and scenario.strategy != "canary-regression":
        row["ratio_abort_to_wald"] = row["challenger_labels_to_abort_mean"] / wald.under_h1
    return row


def markdown_every_label(rows: list[dict[str, Any]], wald_h1: float) -> str:
    lines = [
        "| Scenario | Strategy | Rollouts | Abort rate (95% CI) | Pass / promote | Undecided at cap "
        f"| Challenger labels to abort (mean ± s.e.) | Ratio to Wald E[N\\|H1] = {wald_h1:.1f} "
        "| All labels to abort | All labels to a decision |",
        "|---|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        low, high = r["abort_rate_ci95"]
        name = f"{r['scenario']} ({r['champion_accuracy']:.2f} vs {r['challenger_accuracy']:.2f})"
        if r["strategy"] == "canary-regression":
            name = f"{r['scenario']} (MAE x{r['challenger_accuracy'] / r['champion_accuracy']:.1f})"
        strategy = r["traffic"] + (
            " — replaced fixed-horizon rule (reference)" if r["strategy"] == "ab-fixed-horizon" else ""
        )
        labels = "–"
        if r["challenger_labels_to_abort_mean"] is not None:
            se = r["challenger_labels_to_abort_se"]
            labels = f"{r['challenger_labels_to_abort_mean']:.1f}" + (f" ± {se:.1f}" if se is not None else "")
        ratio = f"{r['ratio_abort_to_wald']:.2f}" if r.get("ratio_abort_to_wald") is not None else "–"
        lines.append(
            f"| {name} | {strategy} | {r['rollouts']} | {r['abort_rate']:.1%} ({low:.1%}–{high:.1%}) | {r['passed']} "
            f"| {r['continue_at_cap']} | {labels} | {ratio} | {_fmt(r['all_labels_to_abort_mean'])} "
            f"| {r['all_labels_to_decision_mean']:.0f} |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(rows: list[dict[str, Any]], wald_h1: float) -> str:
    lines = [
        "| Scenario | Test | Traffic | Rollouts | Abort rate (95% CI) | Pass | Continue at cap "
        "| Labels to abort: mean / median / p90 | Mean labels to decision | Ratio to Wald E[N\\|H1] "
        f"= {wald_h1:.1f}: abort ± s.e. / decision |",
        "|---|---|---|---:|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        name = f"{r['scenario']} ({r['champion_accuracy']:.2f} vs {r['challenger_accuracy']:.2f})"
        if r["target_scenario"]:
            name = f"**{name}**"
        low, high = r["abort_rate_ci95"]
        abort = f"{r['abort_rate']:.1%} ({low:.1%}–{high:.1%})"
        labels = (
            f"{_fmt(r['labels_to_abort_mean'], '.1f')} / {_fmt(r['labels_to_abort_median'])} / "
            f"{_fmt(r['labels_to_abort_p90'])}"
        )
        ratio = "–"
        if r.get("ratio_abort_to_wald") is not None:
            ratio = f"{r['ratio_abort_to_wald']:.3f} ± {r['ratio_abort_to_wald_se']:.3f}"
            ratio += f" / {r['ratio_decision_to_wald']:.2f}"
        lines.append(
            f"| {name} | {r['test_description']} | {r['traffic']} | {r['rollouts']} | {abort} | {r['passed']} "
            f"| {r['continue_at_cap']} | {labels} | {r['labels_to_decision_mean']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=1000, help="simulated rollouts per scenario (>= 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target-rollouts",
        type=int,
        default=10000,
        help="rollouts for the canary-10%% rows, the two the targets are judged on and their references: at 1000 the "
        "Monte-Carlo error (about 0.03 on the ratio, 0.7 points on the rate) is as large as the margins",
    )
    parser.add_argument("--max-labels", type=int, default=5000, help="challenger labels after which a rollout stops")
    parser.add_argument(
        "--every-label-rollouts",
        type=int,
        default=2000,
        help="rollouts per canary row of the second table (every strategy, decided after every label; 0 skips it; "
        "the A/B and shadow rows get 10,000): the statistic is evaluated about 2,000-3,700 times per canary rollout, "
        "so 10,000 canary rollouts per row would take about half an hour on 2 cores",
    )
    parser.add_argument("--max-events", type=int, default=40000, help="labels after which an every-label run stops")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "rollback_decisions.json")
    args = parser.parse_args(argv)
    if args.rollouts < 200:
        parser.error("--rollouts must be at least 200 for the rates to mean anything")

    wald = wald_expected_sample_size(CHAMPION, WORSE, TEST.alpha, TEST.beta)
    a, b = TEST.upper_threshold, TEST.lower_threshold
    kl = WORSE * math.log(WORSE / CHAMPION) + (1 - WORSE) * math.log((1 - WORSE) / (1 - CHAMPION))
    print(
        f"Wald E[N|H1] = ((1-beta)*A + beta*B) / KL(p1||p0) with p0={CHAMPION}, p1={WORSE}, alpha={TEST.alpha}, "
        f"beta={TEST.beta}: A=log((1-beta)/alpha)={a:.4f}, B=log(beta/(1-alpha))={b:.4f}, KL={kl:.6f} "
        f"-> E[N|H1] = {wald.under_h1:.1f} challenger labels (E[N|H0] = {wald.under_h0:.1f})"
    )
    started = time.perf_counter()
    rows = []
    for scenario in SCENARIOS:
        # Seeded by the traffic, not the test: tests on the same traffic see the same labels (paired comparison).
        traffic = [round(x * 1000) for x in (scenario.champion, scenario.challenger, scenario.share)]
        n = max(args.rollouts, args.target_rollouts) if scenario.precise else args.rollouts
        rows.append(summarise(scenario, n, args.max_labels, np.random.default_rng([args.seed, *traffic])))
    elapsed = time.perf_counter() - started

    table = markdown(rows, wald.under_h1)
    print()
    print(table)
    print()
    worse = next(r for r in rows if r["target_scenario"] and r["scenario"] == "worse")
    equal = next(r for r in rows if r["target_scenario"] and r["scenario"] == "equal")
    checks = {
        "ratio_abort_to_wald_le_1.3": worse["ratio_abort_to_wald"] is not None
        and worse["ratio_abort_to_wald"] <= TARGET_RATIO,
        "false_rollback_rate_le_0.05": equal["abort_rate"] <= TARGET_FALSE_ROLLBACK,
    }
    print(
        f"Target 1 (canary 10%, 0.90 vs 0.85): mean labels to abort / Wald E[N|H1] = "
        f"{_fmt(worse['ratio_abort_to_wald'], '.3f')} ± {_fmt(worse['ratio_abort_to_wald_se'], '.3f')} "
        f"(target <= {TARGET_RATIO}): "
        f"{'met' if checks['ratio_abort_to_wald_le_1.3'] else 'NOT met'}"
    )
    print(
        f"Target 2 (canary 10%, 0.90 vs 0.90): false-rollback rate = {equal['abort_rate']:.1%} "
        f"(95% CI {equal['abort_rate_ci95'][0]:.1%}–{equal['abort_rate_ci95'][1]:.1%}; target <= 5%): "
        f"{'met' if checks['false_rollback_rate_le_0.05'] else 'NOT met'}"
    )
    every_rows: list[dict[str, Any]] = []
    if args.every_label_rollouts:
        for scenario in EVERY_LABEL:
            # the A/B interval is closed-form and shadow rollouts are short: those rows afford 10,000 rollouts
            n = args.every_label_rollouts if scenario.strategy == "canary" else max(args.every_label_rollouts, 10000)
            # the closed-form tests (A/B interval, regression) and short shadow rollouts afford 10,000
            every_rows.append(summarise_every_label(scenario, n, args.max_events, args.seed))
            print(
                f"  {scenario.traffic} {scenario.strategy} {scenario.name}: {every_rows[-1]['seconds']} s", flush=True
            )
        every_table = markdown_every_label(every_rows, wald.under_h1)
        print()
        print(every_table)
        print()
        production = [r for r in every_rows if r["strategy"] != "ab-fixed-horizon"]
        checks["every_label_false_rollback_le_alpha"] = all(
            r["abort_rate"] <= TEST.alpha for r in production if r["scenario"] == "equal"
        )
        regression_worse = next(
            r for r in production if r["strategy"] == "canary-regression" and r["scenario"] == "worse"
        )
        checks["regression_10pct_worse_mostly_caught"] = regression_worse["abort_rate"] >= 1 - TEST.beta - 0.1
        checks["every_label_canary_ratio_le_1.3"] = all(
            (r.get("ratio_abort_to_wald") or math.inf) <= TARGET_RATIO
            for r in production
            if r["scenario"] == "worse" and r["strategy"] == "canary"
        )
        print(
            "Every label: largest false-rollback rate of an equal challenger "
            f"{max(r['abort_rate'] for r in production if r['scenario'] == 'equal'):.1%} (alpha {TEST.alpha:.0%}); "
            "canary ratios to Wald "
            + ", ".join(
                f"{r['traffic']} {r['ratio_abort_to_wald']:.2f}"
                for r in production
                if r["scenario"] == "worse" and r["strategy"] == "canary"
            )
        )
    elapsed = time.perf_counter() - started
    per_target = max(args.rollouts, args.target_rollouts)
    print(
        f"{len(SCENARIOS)} scenarios, {args.rollouts} rollouts each ({per_target} for the canary-10% rows), "
        f"in {elapsed:.1f} s"
    )

    result = {
        "benchmark": "rollback_decisions",
        "command": " ".join(
            [".venv/bin/python benchmarks/rollback_decisions.py", f"--rollouts {args.rollouts}", f"--seed {args.seed}"]
            + ([f"--target-rollouts {args.target_rollouts}"] if args.target_rollouts != 10000 else [])
            + ([f"--max-labels {args.max_labels}"] if args.max_labels != 5000 else [])
            + ([f"--every-label-rollouts {args.every_label_rollouts}"] if args.every_label_rollouts != 2000 else [])
        ),
        "seed": args.seed,
        "rollouts_per_scenario": args.rollouts,
        "rollouts_per_canary_10pct_row": max(args.rollouts, args.target_rollouts),
        "max_challenger_labels": args.max_labels,
        "test": {
            "alpha": TEST.alpha,
            "beta": TEST.beta,
            "min_effect": TEST.min_effect,
            "min_samples": TEST.min_samples,
            "upper_threshold": a,
            "lower_threshold": b,
        },
        "wald_reference": {
            "p0": CHAMPION,
            "p1": WORSE,
            "formula": "E[N|H1] = ((1-beta)*log((1-beta)/alpha) + beta*log(beta/(1-alpha))) / KL(p1||p0)",
            "expected_n_h1": wald.under_h1,
            "expected_n_h0": wald.under_h0,
        },
        "targets": {"ratio_abort_to_wald_max": TARGET_RATIO, "false_rollback_rate_max": TARGET_FALSE_ROLLBACK},
        "checks": checks,
        "scenarios": rows,
        "markdown": table,
        "every_label": {
            "rollouts_per_row": args.every_label_rollouts,
            "max_labels": args.max_events,
            "ab_min_labels_per_arm": AB_MIN_LABELS,
            "shadow_p_challenger_right_if_champion_wrong": SHADOW_CROSS,
            "rows": every_rows,
            "markdown": markdown_every_label(every_rows, wald.under_h1) if every_rows else "",
        },
        "seconds": round(elapsed, 2),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
