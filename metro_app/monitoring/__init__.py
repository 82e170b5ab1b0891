"""Monitoring: drift detectors per camera (`drift`), the alert loop over the store (`alerts`), and the
hub's Prometheus metrics (`prometheus`, served on GET /metrics)."""
