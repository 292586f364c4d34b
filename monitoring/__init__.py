"""The monitoring domain: Evidently drift, EWMA health charts, the champion's reference, the monitor's verdict and
the closed loop's policies (retrain guards, rollback eligibility)."""
