"""Statistics a progressive rollout decides with, as pure functions of cumulative counts (so a resumed rollout, another
replica or an audit gets the same answer):

- ``sequential``: the sequential tests on accuracy and error rate run at every evaluation (``likelihood`` holds
  their statistic);
- ``always_valid``: the A/B verdict, a confidence sequence for the difference in accuracy valid at every look;
- ``regression``: the quality test for regressors, on the mean absolute error;
- ``latency``: the latency guard, same-conditions pairs of latencies and an always-valid test on them;
- ``deadline_misses``: which deadline misses the error guard counts (a host stall shared by both variants is not a
  model's failure; a burst of one variant's misses is one event);
- ``fixed_horizon``: a two-proportion test for a single planned look (reference) and the shadow agreement report;
- ``explanations``: each verdict in words; ``arguments``: the checks on what callers pass.

The design, the alternatives measured and the error rates attained are in ``docs/statistics.md``.
"""

from deployments.statistics.always_valid import SequentialABVerdict, ab_sequential
from deployments.statistics.deadline_misses import MissCounts, classify_misses
from deployments.statistics.fixed_horizon import (
    ABVerdict,
    AgreementReport,
    ab_test,
    agreement_report,
    wilson_interval,
)
from deployments.statistics.latency import (
    LatencyGuard,
    LatencyPairs,
    LatencyVerdict,
    pair_by_request,
    pair_by_start_time,
)
from deployments.statistics.likelihood import (
    WaldExpectation,
    profile_log_likelihood_ratio,
    wald_expected_sample_size,
    weighted_log_likelihood_ratio,
)
from deployments.statistics.regression import ErrorSums, RegressionVerdict, SequentialMAETest
from deployments.statistics.sequential import (
    ABORT,
    CONTINUE,
    DECISIONS,
    PASS,
    Decision,
    SequentialErrorRateTest,
    SequentialQualityTest,
    SequentialVerdict,
)

__all__ = [
    "ABORT",
    "CONTINUE",
    "DECISIONS",
    "PASS",
    "ABVerdict",
    "AgreementReport",
    "Decision",
    "ErrorSums",
    "LatencyGuard",
    "LatencyPairs",
    "LatencyVerdict",
    "MissCounts",
    "RegressionVerdict",
    "SequentialABVerdict",
    "SequentialErrorRateTest",
    "SequentialMAETest",
    "SequentialQualityTest",
    "SequentialVerdict",
    "WaldExpectation",
    "ab_sequential",
    "ab_test",
    "agreement_report",
    "classify_misses",
    "pair_by_request",
    "pair_by_start_time",
    "profile_log_likelihood_ratio",
    "wald_expected_sample_size",
    "weighted_log_likelihood_ratio",
    "wilson_interval",
]
