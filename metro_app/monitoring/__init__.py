"""Monitoring: drift detectors per camera (`drift`) and the alert loop over the store (`alerts`)."""
