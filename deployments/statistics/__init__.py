"""Statistics a progressive rollout decides with, as pure functions of cumulative counts (so a resumed rollout, another
replica or an audit gets the same answer):

- ``sequential``: the sequential tests on accuracy and error rate run at every evaluation (``likelihood`` holds
  their statistic);
- ``fixed_horizon``: the A/B two-proportion test and the shadow agreement report;
- ``explanations``: each verdict in words; ``arguments``: the checks on what callers pass.

The design, the alternatives measured and the error rates attained are in ``docs/statistics.md``.
"""

from deployments.statistics.fixed_horizon import (
    ABVerdict,
    AgreementReport,
    ab_test,
    agreement_report,
    wilson_interval,
)
from deployments.statistics.likelihood import (
    WaldExpectation,
    profile_log_likelihood_ratio,
    wald_expected_sample_size,
    weighted_log_likelihood_ratio,
)
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
    "SequentialErrorRateTest",
    "SequentialQualityTest",
    "SequentialVerdict",
    "WaldExpectation",
    "ab_test",
    "agreement_report",
    "profile_log_likelihood_ratio",
    "wald_expected_sample_size",
    "weighted_log_likelihood_ratio",
    "wilson_interval",
]
