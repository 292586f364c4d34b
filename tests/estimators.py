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
