"""Model deployment: the serving gateway, traffic router and rollout strategies (progressive delivery milestone)."""
