"""The gateway's Prometheus metrics (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, prediction_log: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlops_gateway_requests", "Answers per variant and outcome.", ["variant", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "mlops_gateway_predict_latency_seconds",
            "Model predict time per request.",
            ["variant"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mlops_gateway_batch_rows",
            "Rows per model predict call, per variant (requests that arrive while a call runs share the next one).",
            ["variant"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.predictions = Counter(
            "mlops_gateway_predictions", "Records predicted per variant.", ["variant"], registry=self.registry
        )
        self.invalid = Counter("mlops_gateway_invalid_requests", "Requests rejected with 422.", registry=self.registry)
        self.model_info = Gauge(
            "mlops_gateway_model_info",
            "Loaded model per alias.",
            ["alias", "version", "semver"],
            registry=self.registry,
        )
        self.breaker_open = Gauge(
            "mlops_gateway_circuit_open", "1 while a variant's circuit is open.", ["variant"], registry=self.registry
        )
        self.deadline_misses = Counter(
            "mlops_gateway_deadline_misses",
            "Deadline misses per variant, by whose fault: 'model' (the other variant answered in time meanwhile; "
            "counted against its circuit) or 'host' (a stall; not counted).",
            ["variant", "blamed"],
            registry=self.registry,
        )
        self.models_refused = Counter(
            "mlops_gateway_models_refused",
            "Versions an alias named that were refused because their format could run code on load.",
            ["alias", "version"],
            registry=self.registry,
        )
        self.challenger_weight = Gauge(
            "mlops_gateway_challenger_weight_percent", "Challenger's traffic share.", registry=self.registry
        )
        if prediction_log is not None:  # read at scrape time from the log's writer (``core.store.predictions``)
            log = prediction_log
            read_at_scrape: list[tuple[str, str, Callable[[], float]]] = [
                (
                    "mlops_gateway_store_unreachable",
                    "1 while the project store does not answer (answers and labels wait in the journal).",
                    lambda: float(log.unreachable_since is not None),
                ),
                (
                    "mlops_gateway_store_outages",
                    "Times the project store became unreachable since the gateway started.",
                    lambda: float(log.outages),
                ),
                (
                    "mlops_gateway_log_backlog",
                    "Answers and labels journaled and not yet written to the project store (grows while the store is "
                    "unreachable, or while the gateway's load leaves its drainer too little CPU).",
                    lambda: float(log.backlog),
                ),
                (
                    "mlops_gateway_log_drain_cpu_seconds",
                    "CPU seconds spent writing the journal to the project store since the gateway started (by its "
                    "drainer process under `mlops serve`): the part of an answer's cost paid after it was sent.",
                    lambda: float(log.drain_cpu_seconds),
                ),
            ]
            for name, documentation, read in read_at_scrape:
                Gauge(name, documentation, registry=self.registry).set_function(read)
