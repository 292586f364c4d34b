"""The serving and rollout domain: the gateway (model loading, input checks, batching, metrics, routes), the router
and circuit breaker, the rollout policy and its statistics, running a rollout, replayed traffic, Kubernetes."""
