"""Estimators for tests that need a trial to misbehave in ways a real estimator does not do on purpose."""

from __future__ import annotations

import os
from typing import Any

from sklearn.linear_model import LogisticRegression


class WorkerKillingLogisticRegression(LogisticRegression):
    """Ends its whole process (as a Dask worker lost to the OOM killer would end) when fitted with ``C`` above 5."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> WorkerKillingLogisticRegression:
        if self.C > 5:
            os._exit(1)
        return super().fit(X, y, sample_weight)


class ServerSpottingLogisticRegression(LogisticRegression):
    """Fails its trial when the process fitting it (a Dask worker) has started a Prefect API server of its own, as a
    worker that was not told the flow's ``PREFECT_API_URL`` does at its first task."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ServerSpottingLogisticRegression:
        import psutil

        servers = [
            " ".join(child.cmdline())
            for child in psutil.Process().children(recursive=True)
            if "prefect.server" in " ".join(child.cmdline())
        ]
        if servers:
            raise RuntimeError(f"this Dask worker started a Prefect API server of its own: {servers[0][:200]}")
        return super().fit(X, y, sample_weight)


class SlowWhenTinyCLogisticRegression(LogisticRegression):
    """Takes 6 s longer to fit with ``C`` below 0.05: one slow trial among fast ones, to see who takes the rest. With
    1.5 s, on a host running two test suites at once (load average 7 on 2 cores), the other task started so late that
    the slow trial's task was free again before it and took a fast trial too."""

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> SlowWhenTinyCLogisticRegression:
        if self.C < 0.05:
            import time

            time.sleep(6.0)
        return super().fit(X, y, sample_weight)
