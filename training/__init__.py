"""The training domain: data (load, fingerprint, split), the Great Expectations gate, fitting and scoring, the
promotion gates, registration of a candidate, and the MLflow record of a lifecycle run."""
