"""Rollout statistics: exact small cases, invariants, input errors, scipy cross-checks and seeded Monte-Carlo runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats
from scipy.special import xlogy

from deployments.statistics import (
    ABORT,
    CONTINUE,
    DECISIONS,
    PASS,
    MissCounts,
    SequentialErrorRateTest,
    SequentialQualityTest,
    ab_test,
    agreement_report,
    classify_misses,
    profile_log_likelihood_ratio,
    wald_expected_sample_size,
    wilson_interval,
)

TEST = SequentialQualityTest()


# ------------------------------------------------------------------------------------ the statistic, by hand


def test_thresholds_and_wald_expectation_match_the_formulas_worked_by_hand() -> None:
    assert TEST.upper_threshold == pytest.approx(math.log(16))  # (1 - 0.20) / 0.05
    assert TEST.lower_threshold == pytest.approx(math.log(4 / 19))  # 0.20 / (1 - 0.05)
    # Steps of the known-rate LLR: success log(0.85/0.90) = -0.057158, failure log(0.15/0.10) = 0.405465;
    # KL(0.85||0.90) = 0.85 * -0.057158 + 0.15 * 0.405465 = 0.012235,
    # KL(0.90||0.85) = 0.90 * 0.057158 - 0.10 * 0.405465 = 0.010896.
    expected = wald_expected_sample_size(0.90, 0.85, 0.05, 0.20)
    assert expected.under_h1 == pytest.approx((0.8 * 2.772589 + 0.2 * -1.558145) / 0.012235, rel=1e-4)
    assert expected.under_h1 == pytest.approx(155.8, abs=0.1)
    assert expected.under_h0 == pytest.approx((0.05 * 2.772589 + 0.95 * -1.558145) / -0.010896, rel=1e-4)


def test_statistic_for_two_correct_labels_each_is_a_polynomial_integral() -> None:
    # Numerator: integral over [0.05, 1] of (p - 0.05)**2 * p**2 = p**4 - 0.1 p**3 + 0.0025 p**2, antiderivative
    # p**5/5 - 0.025 p**4 + 0.0025 p**3/3. Denominator: integral over [0, 1] of p**4 = 1/5.
    def antiderivative(p: float) -> float:
        return p**5 / 5 - 0.025 * p**4 + 0.0025 * p**3 / 3

    expected = math.log((antiderivative(1.0) - antiderivative(0.05)) / (1 / 5))
    assert expected == pytest.approx(-0.128781, abs=1e-6)
    assert float(TEST.log_likelihood_ratio(2, 2, 2, 2)) == pytest.approx(expected, abs=1e-12)


def test_statistic_for_two_challenger_failures_against_two_champion_successes() -> None:
    # Numerator: integral over [0.05, 1] of (1.05 - p)**2 * p**2; denominator: integral of p**2 (1-p)**2 = 1/30.
    numerator = np.polynomial.Polynomial([0, 0, 1.05**2, -2.1, 1]).integ()
    expected = math.log((numerator(1.0) - numerator(0.05)) * 30)
    assert float(TEST.log_likelihood_ratio(0, 2, 2, 2)) == pytest.approx(expected, abs=1e-12)


def test_statistic_with_one_model_unlabelled_is_an_incomplete_beta_function() -> None:
    # Only the challenger: the H1 weight covers challenger accuracies [0, 0.95], H0 covers [0, 1], so the ratio is
    # the regularised incomplete beta I_0.95(correct + 1, wrong + 1).
    for correct, n in [(0, 0), (80, 100), (100, 100), (3, 7)]:
        expected = math.log(special.betainc(correct + 1, n - correct + 1, 0.95))
        assert float(TEST.log_likelihood_ratio(correct, n, 0, 0)) == pytest.approx(expected, abs=1e-10)
    # Only the champion: H1 excludes champion accuracies below 0.05, so 1 - I_0.05(correct + 1, wrong + 1).
    for correct, n in [(450, 500), (1, 3)]:
        expected = math.log(1 - special.betainc(correct + 1, n - correct + 1, 0.05))
        assert float(TEST.log_likelihood_ratio(0, 0, correct, n)) == pytest.approx(expected, abs=1e-10)
    assert float(TEST.log_likelihood_ratio(0, 0, 0, 0)) == pytest.approx(math.log(0.95))
    # 100 correct of 100 cannot be 5 points below any champion: strong evidence for "not worse" ...
    assert float(TEST.log_likelihood_ratio(100, 100, 0, 0)) < TEST.lower_threshold
    verdict = TEST.evaluate(0, 0, 0, 0)  # ... but no decision without labels on both models
    assert verdict.decision == "continue"
    assert verdict.challenger_rate is None and verdict.champion_rate is None


@pytest.mark.parametrize(
    ("s1", "n1", "s2", "n2"),
    [(7, 10, 40, 50), (0, 5, 3, 3), (10, 10, 20, 20), (150, 180, 1450, 1600), (1, 30, 29, 30), (170, 200, 1620, 1800)],
)
def test_statistic_equals_adaptive_quadrature(s1: int, n1: int, s2: int, n2: int) -> None:
    d = 0.05
    mode = optimize.minimize_scalar(
        lambda p: -_h1(s1, n1, s2, n2, p), bounds=(d, 1.0), method="bounded", options={"xatol": 1e-12}
    ).x
    peak = _h1(s1, n1, s2, n2, mode)
    area = integrate.quad(lambda p: math.exp(_h1(s1, n1, s2, n2, p) - peak), d, 1.0, points=[mode], epsrel=1e-12)[0]
    expected = peak + math.log(area) - special.betaln(s1 + s2 + 1, n1 + n2 - s1 - s2 + 1)
    assert float(TEST.log_likelihood_ratio(s1, n1, s2, n2)) == pytest.approx(expected, abs=1e-8)


def _h1(s1: int, n1: int, s2: int, n2: int, p: float, d: float = 0.05) -> float:
    return float(xlogy(s1, p - d) + xlogy(n1 - s1, 1 + d - p) + xlogy(s2, p) + xlogy(n2 - s2, 1 - p))


def test_statistic_with_a_huge_champion_sample_is_walds_known_rate_llr() -> None:
    known = 3 * math.log(0.85 / 0.90) + 2 * math.log(0.15 / 0.10)  # 3 successes, 2 failures: 0.639456
    assert float(TEST.log_likelihood_ratio(3, 5, 900_000, 1_000_000)) == pytest.approx(known, abs=1e-3)


def test_statistic_is_the_laplace_corrected_profile_ratio_for_large_samples() -> None:
    s1, n1, s2, n2, d = 1700, 2000, 18000, 20000, 0.05
    profile = float(profile_log_likelihood_ratio(s1, n1, s2, n2, d))
    mode = optimize.minimize_scalar(
        lambda p: -_h1(s1, n1, s2, n2, p), bounds=(d, 1.0), method="bounded", options={"xatol": 1e-13}
    ).x
    f1, f2 = n1 - s1, n2 - s2
    curvature_h1 = s1 / (mode - d) ** 2 + f1 / (1 + d - mode) ** 2 + s2 / mode**2 + f2 / (1 - mode) ** 2
    pooled = (s1 + s2) / (n1 + n2)
    curvature_h0 = (n1 + n2) / (pooled * (1 - pooled))
    laplace = profile - 0.5 * math.log(curvature_h1 / curvature_h0)
    assert float(TEST.log_likelihood_ratio(s1, n1, s2, n2)) == pytest.approx(laplace, abs=1e-3)


def test_profile_reference_ratio_by_hand() -> None:
    # All correct on both sides: H0 likelihood 1; H1 best at p = 1 with the challenger at 0.95: 2 log 0.95.
    assert float(profile_log_likelihood_ratio(2, 2, 2, 2, 0.05)) == pytest.approx(2 * math.log(0.95), abs=1e-12)
    # Two challenger failures, two champion successes: H0 pooled 1/2 -> 4 log 0.5; H1 at p = 0.525 -> 4 log 0.525.
    assert float(profile_log_likelihood_ratio(0, 2, 2, 2, 0.05)) == pytest.approx(4 * math.log(1.05), abs=1e-12)


# --------------------------------------------------------------------------------------------- invariants


def test_llr_rises_with_challenger_failures_and_falls_with_champion_failures() -> None:
    challenger_correct = np.arange(60, 101)
    by_challenger = TEST.log_likelihood_ratio(challenger_correct, 100, 900, 1000)
    assert np.all(np.diff(by_challenger) < 0)  # more challenger successes: less evidence it is worse
    champion_correct = np.arange(700, 1001)
    by_champion = TEST.log_likelihood_ratio(85, 100, champion_correct, 1000)
    assert np.all(np.diff(by_champion) > 0)  # a better champion makes the same challenger look worse


def test_evidence_accumulates_with_more_labels_at_the_same_rates() -> None:
    scale = np.arange(1, 30)
    worse = TEST.log_likelihood_ratio(17 * scale, 20 * scale, 180 * scale, 200 * scale)  # 0.85 vs 0.90
    assert np.all(np.diff(worse) > 0)
    equal = TEST.log_likelihood_ratio(18 * scale, 20 * scale, 180 * scale, 200 * scale)  # 0.90 vs 0.90
    assert np.all(np.diff(equal) < 0)


def test_vectorised_decisions_equal_scalar_verdicts() -> None:
    rng = np.random.default_rng(7)
    n1 = rng.integers(0, 400, size=150)
    s1 = rng.binomial(n1, 0.87)
    n2 = rng.integers(0, 3000, size=150)
    s2 = rng.binomial(n2, 0.90)
    test = SequentialQualityTest(max_samples=300)
    codes = test.decision_codes(s1, n1, s2, n2)
    llrs = test.log_likelihood_ratio(s1, n1, s2, n2)
    for i in range(150):
        verdict = test.evaluate(int(s1[i]), int(n1[i]), int(s2[i]), int(n2[i]))
        assert verdict.decision == DECISIONS[codes[i]]
        assert verdict.log_likelihood_ratio == pytest.approx(llrs[i], abs=1e-9)
    assert {CONTINUE, ABORT, PASS} <= set(codes.tolist())  # the sample exercises every branch


def test_cumulative_counts_give_the_same_answer_label_by_label_at_once_and_after_a_restart() -> None:
    rng = np.random.default_rng(3)
    labels = 250
    s1 = np.cumsum(rng.random(labels) < 0.84)
    n1 = np.arange(1, labels + 1)
    gaps = rng.geometric(0.1, size=labels) - 1  # champion labels arriving between two challenger labels
    s2 = np.cumsum(rng.binomial(gaps, 0.90))
    n2 = np.cumsum(gaps)
    test = SequentialQualityTest()
    at_once = test.decision_codes(s1, n1, s2, n2)  # the whole history in one vectorised call
    for i in range(labels):
        verdict = test.evaluate(int(s1[i]), int(n1[i]), int(s2[i]), int(n2[i]))  # as each label arrives
        assert verdict.decision == DECISIONS[at_once[i]]
        if i == 150:  # a restart: only the persisted counts survive
            persisted = json.loads(json.dumps({"s1": int(s1[i]), "n1": i + 1, "s2": int(s2[i]), "n2": int(n2[i])}))
            assert test.evaluate(persisted["s1"], persisted["n1"], persisted["s2"], persisted["n2"]) == verdict
    assert (at_once != CONTINUE).any(), "a 6-point-worse challenger should be decided within 250 labels (seed 3)"


def test_decisions_and_explanations() -> None:
    aborted = TEST.evaluate(130, 161, 2742, 3040)
    assert aborted.decision == "abort"
    assert aborted.log_likelihood_ratio >= aborted.upper_threshold
    assert aborted.explanation.startswith("Challenger accuracy 0.807 on 161 labels vs champion 0.902 on 3040")
    assert "at least 5 points worse crossed the 95% threshold; roll back." in aborted.explanation

    passed = TEST.evaluate(130, 140, 1135, 1260)
    assert passed.decision == "pass" and not passed.truncated
    assert passed.log_likelihood_ratio <= passed.lower_threshold
    assert "not 5 points worse" in passed.explanation

    early = TEST.evaluate(10, 19, 900, 1000)  # 53% on 19 labels: damning, but below min_samples
    assert early.log_likelihood_ratio > early.upper_threshold
    assert early.decision == "continue"
    assert "waiting for at least 20 labels" in early.explanation

    undecided = TEST.evaluate(70, 80, 647, 720)
    assert undecided.decision == "continue"
    assert "keep collecting labels" in undecided.explanation

    payload = json.loads(json.dumps(aborted.to_json()))
    assert payload["decision"] == "abort" and payload["challenger_n"] == 161
    assert set(payload) >= {
        "decision",
        "challenger_n",
        "champion_n",
        "challenger_rate",
        "champion_rate",
        "log_likelihood_ratio",
        "lower_threshold",
        "upper_threshold",
        "explanation",
    }


def test_max_samples_passes_an_undecided_rollout_but_never_hides_an_abort() -> None:
    test = SequentialQualityTest(max_samples=100)
    budget = test.evaluate(90, 100, 900, 1000)
    assert budget.decision == "pass" and budget.truncated
    assert "budget of 100 challenger labels" in budget.explanation
    assert test.evaluate(89, 99, 900, 1000).decision == "continue"
    assert test.evaluate(70, 100, 900, 1000).decision == "abort"
    assert test.evaluate(90, 100, 18, 20).decision == "pass"  # champion has its min_samples: budget applies
    assert test.evaluate(90, 100, 17, 19).decision == "continue"  # no decision without min_samples on each model


def test_error_rate_test_is_the_quality_test_on_one_minus_the_error_rate() -> None:
    errors = SequentialErrorRateTest(min_effect=0.05)
    quality = SequentialQualityTest(min_effect=0.05)
    for e1, n1, e2, n2 in [(12, 400, 36, 3600), (30, 200, 200, 2000), (0, 50, 5, 500)]:
        by_errors = errors.evaluate(e1, n1, e2, n2)
        by_quality = quality.evaluate(n1 - e1, n1, n2 - e2, n2)
        assert by_errors.log_likelihood_ratio == pytest.approx(by_quality.log_likelihood_ratio, abs=1e-12)
        assert by_errors.decision == by_quality.decision
        assert by_errors.challenger_rate == pytest.approx(e1 / n1)


def test_error_rate_test_rolls_back_on_more_errors_with_a_two_point_default() -> None:
    test = SequentialErrorRateTest()
    assert test.min_effect == 0.02
    worse = test.evaluate(15, 400, 36, 3600)  # 3.75% vs 1.0% errors
    assert worse.decision == "abort"
    assert worse.explanation.startswith("Challenger error rate 0.037 on 400 requests vs champion 0.010 on 3600")
    assert "at least 2 points worse" in worse.explanation
    assert test.evaluate(2, 400, 36, 3600).decision == "pass"  # 0.5% vs 1.0%: better
    assert float(test.log_likelihood_ratio(15, 400, 36, 3600)) > float(test.log_likelihood_ratio(8, 400, 36, 3600))


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha must be strictly between 0 and 1"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"beta": 1.5}, "beta"),
        ({"alpha": 0.6, "beta": 0.5}, "alpha \\+ beta must be < 1"),
        ({"min_effect": 0.0}, "min_effect"),
        ({"min_effect": 1.0}, "min_effect"),
        ({"min_samples": 0}, "min_samples"),
        ({"max_samples": 10}, "max_samples must be None or an int >= min_samples"),
    ],
)
def test_bad_parameters_name_the_parameter_and_the_fix(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SequentialQualityTest(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        ((-1, 10, 5, 10), "challenger_correct must be >= 0"),
        ((5, -10, 5, 10), "challenger_n must be >= 0"),
        ((11, 10, 5, 10), "challenger_correct \\(11\\) cannot exceed challenger_n \\(10\\)"),
        ((5, 10, 12, 10), "champion_correct \\(12\\) cannot exceed champion_n"),
        ((2.5, 10, 5, 10), "challenger_correct must be a whole number"),
        ((True, 10, 5, 10), "challenger_correct must be a whole number"),
        (("5", 10, 5, 10), "challenger_correct must be a whole number"),
    ],
)
def test_bad_counts_name_the_argument(counts: tuple[object, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TEST.evaluate(*counts)  # type: ignore[arg-type]


def test_error_rate_test_names_its_own_arguments() -> None:
    with pytest.raises(ValueError, match="challenger_errors \\(5\\) cannot exceed challenger_n"):
        SequentialErrorRateTest().evaluate(5, 4, 0, 10)


def test_counts_from_databases_and_numpy_are_accepted() -> None:
    assert TEST.evaluate(np.int64(170), 200.0, 1800, np.int32(2000)) == TEST.evaluate(170, 200, 1800, 2000)


def test_vectorised_inputs_are_checked_too() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        TEST.log_likelihood_ratio(np.array([5, 11]), np.array([10, 10]), 5, 10)
    with pytest.raises(ValueError, match="min_effect"):
        profile_log_likelihood_ratio(1, 2, 1, 2, min_effect=0.0)


# ------------------------------------------------------------------------------------------------ A/B test


@pytest.mark.parametrize(
    ("ka", "na", "kb", "nb"), [(100, 1000, 120, 1000), (48, 80, 56, 70), (3, 10, 9, 10), (500, 5000, 430, 4000)]
)
def test_ab_p_value_matches_scipy_chi_square_without_correction(ka: int, na: int, kb: int, nb: int) -> None:
    verdict = ab_test(ka, na, kb, nb)
    table = [[ka, na - ka], [kb, nb - kb]]
    chi2 = stats.chi2_contingency(table, correction=False)
    assert verdict.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    assert verdict.difference == pytest.approx(kb / nb - ka / na)
    assert verdict.significant == (chi2.pvalue < 0.05)


@pytest.mark.parametrize(
    ("a", "b", "lower", "upper"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score)
        ((48, 80), (56, 70), 0.0524, 0.3339),
        ((3, 10), (9, 10), 0.1705, 0.8090),
        ((0, 29), (5, 56), -0.0381, 0.1926),
        ((0, 20), (0, 10), -0.1611, 0.2775),
        ((0, 10), (10, 10), 0.6075, 1.0000),
    ],
)
def test_ab_interval_reproduces_newcombes_published_hybrid_score_intervals(
    a: tuple[int, int], b: tuple[int, int], lower: float, upper: float
) -> None:
    verdict = ab_test(a[0], a[1], b[0], b[1])
    assert verdict.ci_lower == pytest.approx(lower, abs=5e-5)
    assert verdict.ci_upper == pytest.approx(upper, abs=5e-5)


def test_ab_winner_direction_and_symmetry() -> None:
    verdict = ab_test(100, 1000, 140, 1000)
    assert verdict.significant and verdict.winner == "b"
    assert "b is better" in verdict.explanation
    swapped = ab_test(140, 1000, 100, 1000)
    assert swapped.winner == "a"
    assert swapped.difference == pytest.approx(-verdict.difference)  # type: ignore[operator]
    assert swapped.ci_lower == pytest.approx(-verdict.ci_upper)  # type: ignore[operator]
    assert swapped.p_value == pytest.approx(verdict.p_value)
    assert ab_test(100, 1000, 140, 1000, higher_is_better=False).winner == "a"  # counting errors: fewer wins
    assert ab_test(100, 1000, 110, 1000).winner is None


def test_ab_handles_empty_arms_and_degenerate_rates_without_dividing_by_zero() -> None:
    empty = ab_test(0, 0, 3, 12)
    assert empty.insufficient_data and empty.p_value is None and empty.winner is None
    assert "variant a has no observations" in empty.explanation
    both_empty = ab_test(0, 0, 0, 0)
    assert both_empty.insufficient_data and "a and b" in both_empty.explanation
    for ka, na, kb, nb in [(0, 10, 0, 12), (50, 50, 80, 80)]:
        flat = ab_test(ka, na, kb, nb)
        assert flat.insufficient_data and flat.p_value == 1.0 and not flat.significant
        assert flat.ci_lower is not None and flat.ci_lower < 0 < flat.ci_upper  # type: ignore[operator]
    extreme = ab_test(0, 100, 100, 100)
    assert not extreme.insufficient_data and extreme.winner == "b"
    for verdict in (empty, both_empty, extreme):
        json.dumps(verdict.to_json())
    with pytest.raises(ValueError, match="successes_b \\(5\\) cannot exceed n_b \\(4\\)"):
        ab_test(1, 10, 5, 4)
    with pytest.raises(ValueError, match="confidence"):
        ab_test(1, 10, 2, 10, confidence=95)


def test_ab_flags_small_expected_counts() -> None:
    assert "normal approximation is rough" in ab_test(1, 10, 5, 10).explanation
    assert "normal approximation" not in ab_test(100, 1000, 120, 1000).explanation


# --------------------------------------------------------------------------------------- intervals, shadow


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (1, 3), (9412, 10000), (57, 80)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_interval_matches_scipy(k: int, n: int, confidence: float) -> None:
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_agreement_report() -> None:
    report = agreement_report(10_000, 9_412)
    assert report.agreement_rate == pytest.approx(0.9412)
    assert (report.ci_lower, report.ci_upper) == pytest.approx(wilson_interval(9_412, 10_000))
    assert report.explanation == (
        "The shadow model agreed with the live model on 9,412 of 10,000 requests (94.1%; 95% interval 93.6% to 94.6%)."
    )
    assert json.loads(json.dumps(report.to_json()))["n_agreed"] == 9_412
    nothing = agreement_report(0, 0)
    assert nothing.agreement_rate is None and (nothing.ci_lower, nothing.ci_upper) == (0.0, 1.0)
    assert agreement_report(50, 50).ci_upper == 1.0
    with pytest.raises(ValueError, match="n_agreed \\(11\\) cannot exceed n_compared \\(10\\)"):
        agreement_report(10, 11)


# ----------------------------------------------------------------------------------------- Monte-Carlo


def _simulate(
    test: SequentialQualityTest,
    challenger: float,
    champion: float,
    share: float,
    rollouts: int,
    rng: np.random.Generator,
    labels: int = 2000,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded rollouts: challenger labels one at a time, champion labels in between (``share`` to challenger).

    Evaluated block by block on the rollouts still running, so finished rollouts cost nothing.
    """
    decision = np.full(rollouts, CONTINUE, dtype=np.int8)
    used = np.full(rollouts, labels)
    totals = np.zeros((3, rollouts))  # challenger correct, champion correct, champion labels
    active, done, block = np.arange(rollouts), 0, 100
    while active.size and done < labels:
        width = min(block, labels - done)
        gaps = rng.geometric(share, size=(active.size, width)) - 1
        s1 = totals[0, active, None] + np.cumsum(rng.random((active.size, width)) < challenger, axis=1)
        n1 = np.broadcast_to(done + np.arange(1, width + 1), s1.shape)
        s2 = totals[1, active, None] + np.cumsum(rng.binomial(gaps, champion), axis=1)
        n2 = totals[2, active, None] + np.cumsum(gaps, axis=1)
        codes = test.decision_codes(s1, n1, s2, n2)
        stopped = codes != CONTINUE
        hit = stopped.any(axis=1)
        first = stopped.argmax(axis=1)[hit]
        decision[active[hit]] = codes[hit, first]
        used[active[hit]] = done + first + 1
        totals[:, active] = s1[:, -1], s2[:, -1], n2[:, -1]
        active, done, block = active[~hit], done + width, block * 2
    return decision, used


@pytest.mark.parametrize(("share", "limit"), [(0.1, 0.065), (0.5, 0.065)])
def test_equal_models_are_rarely_rolled_back_although_the_champion_is_estimated(share: float, limit: float) -> None:
    # 500 rollouts: the long-run rate is about 4.3% (canary) and 4.5% (50/50) for alpha = 5% (see the benchmark);
    # the limit leaves about two standard errors of slack for the small sample.
    decision, _ = _simulate(TEST, 0.90, 0.90, share, 500, np.random.default_rng(2024))
    assert np.mean(decision == ABORT) <= limit
    assert np.mean(decision == CONTINUE) < 0.01  # nearly all rollouts decide within 2000 labels


def test_naive_plug_in_of_the_champion_rate_would_break_the_bound() -> None:
    # Why the profile likelihood: treating the champion's observed rate as known rolls back ~27% of equal
    # challengers at 50/50. Same traffic, same boundaries.
    rng = np.random.default_rng(2024)
    rollouts, labels = 600, 1500
    s1 = np.cumsum(rng.random((rollouts, labels)) < 0.90, axis=1)
    n1 = np.arange(1, labels + 1)
    gaps = rng.geometric(0.5, size=(rollouts, labels)) - 1
    n2 = np.cumsum(gaps, axis=1)
    p0 = np.clip(np.cumsum(rng.binomial(gaps, 0.90), axis=1) / np.maximum(n2, 1), 0.05 + 1e-9, 1 - 1e-9)
    llr = s1 * np.log((p0 - 0.05) / p0) + (n1 - s1) * np.log((1.05 - p0) / (1 - p0))
    ready = (n1 >= 20) & (n2 >= 20)
    stop = ready & ((llr >= TEST.upper_threshold) | (llr <= TEST.lower_threshold))
    first = stop.argmax(axis=1)
    naive_abort_rate = np.mean(stop.any(axis=1) & (llr[np.arange(rollouts), first] >= TEST.upper_threshold))
    assert naive_abort_rate > 0.15


def test_a_five_point_worse_challenger_is_rolled_back_in_most_rollouts_and_quickly() -> None:
    decision, used = _simulate(TEST, 0.85, 0.90, 0.1, 500, np.random.default_rng(99))
    aborted = decision == ABORT
    assert aborted.mean() >= 0.72  # power 1 - beta = 80%
    wald = wald_expected_sample_size(0.90, 0.85).under_h1
    assert used[aborted].mean() <= 1.4 * wald  # about 1.27x in the long run; the benchmark checks 1.3x
    much_worse, _ = _simulate(TEST, 0.75, 0.90, 0.1, 100, np.random.default_rng(5))
    assert np.mean(much_worse == ABORT) >= 0.99


# ------------------------------------------------------------------------------------ the latency guard
def test_latency_evidence_is_the_mixture_integral() -> None:
    from deployments.statistics.latency import log_mixture_ratio

    for slow, n in [(0, 5), (7, 7), (13, 20), (60, 100), (3, 40)]:
        exact = integrate.quad(lambda q, s=slow, m=n: (2 * q) ** s * (2 * (1 - q)) ** (m - s) * 2, 0.5, 1)[0]
        assert math.exp(float(log_mixture_ratio(slow, n))) == pytest.approx(exact, rel=1e-9)
    # all of the first seven pairs too slow: (2**8 - 1) / 8 = 31.9, past 1/alpha = 20
    assert math.exp(float(log_mixture_ratio(7, 7))) == pytest.approx(255 / 8)


def test_latency_guard_false_rollbacks_stay_below_alpha_when_checked_after_every_pair() -> None:
    """At the tolerated limit half of the pairs are too slow: Ville's inequality bounds the chance that the evidence
    *ever* reaches 1/alpha, however often it is looked at."""
    from deployments.statistics import LatencyGuard

    guard = LatencyGuard(alpha=0.05, min_pairs=1)
    rng = np.random.default_rng(11)
    slow = np.cumsum(rng.random((2000, 2000)) < 0.5, axis=1)  # 2,000 streams: the rate is known to about 0.5%
    n = np.arange(1, 2001)
    ever = guard.decision_codes(slow, np.broadcast_to(n, slow.shape)).any(axis=1)
    assert ever.mean() <= 0.05
    faster = np.cumsum(rng.random((600, 2000)) < 0.3, axis=1)  # within the limit: far fewer
    assert guard.decision_codes(faster, np.broadcast_to(n, faster.shape)).any(axis=1).mean() <= 0.005
    slower = np.cumsum(rng.random((200, 400)) < 0.75, axis=1)  # beyond it: caught, and soon
    caught = guard.decision_codes(slower, np.broadcast_to(np.arange(1, 401), slower.shape))
    assert caught.any(axis=1).mean() >= 0.99 and np.median(caught.argmax(axis=1)) < 60


def test_pairs_are_nearest_in_start_time_and_blind_to_latency() -> None:
    from deployments.statistics import pair_by_request, pair_by_start_time

    # champion answers every 10 ms; challenger answers at 24 and 61 ms, and one 3 s later with nobody near it
    start = np.array([0.0, 0.010, 0.020, 0.030, 0.040, 0.050, 0.060, 0.070, 0.024, 0.061, 3.0])
    chall = np.array([False] * 8 + [True] * 3)
    latency = np.arange(11, dtype=float)
    pairs = pair_by_start_time(start, latency, chall, window_seconds=1.0)
    assert pairs.challenger_ms.tolist() == [8.0, 9.0] and pairs.champion_ms.tolist() == [2.0, 6.0]
    # the same starts with other latencies give the same pairs: the pairing never looks at latencies
    again = pair_by_start_time(start, latency[::-1].copy(), chall, window_seconds=1.0)
    assert again.challenger_ms.tolist() == [2.0, 1.0] and again.champion_ms.tolist() == [8.0, 4.0]
    # each champion answer pairs once
    crowd = pair_by_start_time([0.0, 0.001, 0.002, 0.003], [1, 2, 3, 4], [False, True, True, True])
    assert crowd.n == 1
    shadow = pair_by_request(["a", "b", "a", "c"], [4.0, 5.0, 9.0, 1.0], [False, False, True, True])
    assert (shadow.challenger_ms.tolist(), shadow.champion_ms.tolist()) == ([9.0], [4.0])


def test_a_load_swing_shared_by_both_variants_does_not_roll_back_an_equally_fast_challenger() -> None:
    from deployments.statistics import LatencyGuard, pair_by_start_time

    rng = np.random.default_rng(3)
    start = np.sort(rng.uniform(0, 33, 5000))  # 150 requests/s; judged 3 s after ...
    chall = rng.random(5000) < np.where(start < 30, 0.1, 0.5)  # ... the canary's second step, which ...
    load = np.where(start < 30, 1.0, 3.0)  # ... coincided with another job starting
    latency = 20 * rng.lognormal(0, 0.25, 5000) * load
    pooled_ratio = np.percentile(latency[chall], 95) / np.percentile(latency[~chall], 95)
    assert pooled_ratio > 1.5  # what the old p95 guard saw
    verdict = LatencyGuard(alpha=0.05).evaluate(pair_by_start_time(start, latency, chall))
    assert verdict.decision == "continue" and verdict.median_ratio == pytest.approx(1.0, abs=0.05)
    slow = LatencyGuard(alpha=0.05).evaluate(pair_by_start_time(start, latency * np.where(chall, 2.0, 1.0), chall))
    assert slow.decision == "abort" and "roll back" in slow.explanation


# ------------------------------------------------------------------------------------ the always-valid A/B verdict
def test_ab_interval_is_the_mixture_boundary() -> None:
    from deployments.statistics import ab_sequential
    from deployments.statistics.always_valid import half_width

    verdict = ab_sequential(450, 500, 430, 500, alpha=0.05, min_effect=0.05)
    pa, pb = 451 / 502, 431 / 502
    v = pa * (1 - pa) / 500 + pb * (1 - pb) / 500
    half = math.sqrt(v * (v + 0.0025) / 0.0025 * (2 * math.log(20) + math.log((v + 0.0025) / v)))
    assert half_width(v, 0.05, 0.05) == pytest.approx(half)
    assert verdict.difference == pytest.approx(-0.04)
    assert (verdict.ci_lower, verdict.ci_upper) == pytest.approx((-0.04 - half, -0.04 + half))
    # at the same counts the fixed-horizon interval is narrower: the price of being valid at every look
    fixed = ab_test(450, 500, 430, 500)
    assert fixed.ci_upper - fixed.ci_lower < verdict.ci_upper - verdict.ci_lower
    assert "always-valid 95% interval" in verdict.explanation


def test_ab_verdict_holds_its_level_when_looked_at_after_every_label() -> None:
    from deployments.statistics.always_valid import half_width

    rng = np.random.default_rng(8)
    rollouts, labels = 1000, 3000
    arm = rng.random((rollouts, labels)) < 0.5
    correct = rng.random((rollouts, labels)) < 0.9
    nb = np.cumsum(arm, axis=1)
    na = np.arange(1, labels + 1) - nb
    kb, ka = np.cumsum(correct & arm, axis=1), np.cumsum(correct & ~arm, axis=1)
    pa, pb = (ka + 1) / (na + 2), (kb + 1) / (nb + 2)
    v = pa * (1 - pa) / np.maximum(na, 1) + pb * (1 - pb) / np.maximum(nb, 1)
    half = np.vectorize(lambda x: half_width(x, 0.05, 0.05))(v)
    diff = kb / np.maximum(nb, 1) - ka / np.maximum(na, 1)
    ready = (na >= 100) & (nb >= 100)
    assert (ready & (diff + half < 0)).any(axis=1).mean() <= 0.05  # equal models: "worse" at some look
    assert (ready & (np.abs(diff) > half)).any(axis=1).mean() <= 0.05  # either side


# ------------------------------------------------------------------------------------ regression: mean absolute error
def test_mae_statistic_by_hand_and_its_verdicts() -> None:
    from deployments.statistics import ErrorSums, SequentialMAETest

    test = SequentialMAETest(alpha=0.05, beta=0.2, min_effect=2.0, min_effect_ratio=None, min_samples=2)
    chall = ErrorSums(3, 3 + 5 + 7, 9 + 25 + 49)  # errors 3, 5, 7: mean 5, variance 4
    champ = ErrorSums(4, 4 * 3.0, 4 * 9.0 + 3 * 1.0)  # mean 3, variance 1
    v = 4 / 3 + 1 / 4
    verdict = test.evaluate(chall, champ)
    assert verdict.log_likelihood_ratio == pytest.approx((2.0 * (5 - 3) - 2.0**2 / 2) / v)
    assert verdict.decision == "continue" and "waiting" not in verdict.explanation
    ratio = SequentialMAETest(min_effect_ratio=0.5, min_samples=2).evaluate(chall, champ)
    assert ratio.min_effect == pytest.approx(1.5)  # half of the champion's 3
    assert "50% worse than the champion's" in ratio.explanation
    with pytest.raises(ValueError, match="min_effect"):
        SequentialMAETest(min_effect=None, min_effect_ratio=None)


def test_mae_test_holds_its_error_rates_after_every_label() -> None:
    from deployments.statistics import SequentialMAETest

    test = SequentialMAETest(alpha=0.05, beta=0.2, min_effect_ratio=0.1)
    rng = np.random.default_rng(21)

    def abort_rate(ratio: float, rollouts: int = 600, labels: int = 8000) -> float:
        to_c = rng.random((rollouts, labels)) < 0.1
        err = np.abs(rng.normal(0, 1, (rollouts, labels))) * np.where(to_c, ratio, 1.0)
        e1, e2 = np.where(to_c, err, 0.0), np.where(to_c, 0.0, err)
        codes = test.decision_codes(
            np.cumsum(e1, 1), np.cumsum(e1**2, 1), np.cumsum(to_c, 1),
            np.cumsum(e2, 1), np.cumsum(e2**2, 1), np.cumsum(~to_c, 1),
        )  # fmt: skip
        stop = codes != CONTINUE
        first = stop.argmax(axis=1)
        return float(np.mean(stop.any(axis=1) & (codes[np.arange(rollouts), first] == ABORT)))

    assert abort_rate(1.0) <= 0.065  # alpha 5%: 3.6% over 10,000 rollouts in the benchmark
    assert abort_rate(1.1) >= 0.65  # beta 20%: 75% over 10,000 rollouts


# ------------------------------------------------------------------------------------ deadline misses, host or model
def test_misses_of_both_variants_at_the_same_moment_are_a_host_stall_and_not_counted() -> None:
    """The field case: a stall makes every request in flight late together, 5-8 misses of both within 100 ms."""
    start = [100.00, 100.01, 100.02, 100.03, 100.04, 100.05, 100.06]
    end = [s + 0.25 for s in start]
    chall = [True, False, False, True, False, False, False]
    counts = classify_misses(start, end, chall)
    assert counts["challenger"] == MissCounts(total=2, shared=2, episodes=0)
    assert counts["champion"] == MissCounts(total=5, shared=5, episodes=0)
    assert counts["challenger"].left_out == 2
    assert "2 at the same moment as the other variant's" in counts["challenger"].describe()


def test_a_burst_of_one_variants_own_misses_is_one_event_and_separate_bursts_count_apart() -> None:
    start = np.array([10.0, 10.02, 10.05, 20.0, 30.0])
    counts = classify_misses(start, start + 0.25, [True] * 5)
    assert counts["challenger"] == MissCounts(total=5, shared=0, episodes=3)  # 10.0-10.05, 20.0, 30.0
    assert counts["champion"] == MissCounts()
    # a champion miss long before or after overlaps none of them
    counts = classify_misses([*start, 5.0], [*(start + 0.25), 5.25], [True] * 5 + [False])
    assert counts["challenger"].episodes == 3 and counts["champion"] == MissCounts(1, 0, 1)


def test_a_hanging_challenger_next_to_a_healthy_champion_keeps_most_of_its_misses() -> None:
    """15 requests/s to a challenger that never answers, one champion miss somewhere: the challenger's misses are its
    own, and merging the ones given up within 100 ms of each other still leaves one event per one or two."""
    start = np.arange(0.0, 20.0, 1 / 15)
    chall_end = start + 0.25
    counts = classify_misses([*start, 7.0], [*chall_end, 7.25], [True] * start.size + [False])
    c = counts["challenger"]
    assert c.total == 300 and c.shared <= 8 and c.episodes >= 140
    assert counts["champion"].shared == 1


def test_miss_classification_checks_its_input() -> None:
    with pytest.raises(ValueError, match="one entry per deadline miss"):
        classify_misses([1.0], [1.25, 2.0], [True])
    with pytest.raises(ValueError, match="burst_seconds must be >= 0"):
        classify_misses([], [], [], burst_seconds=-1)
