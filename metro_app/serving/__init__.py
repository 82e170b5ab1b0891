"""Scoring on request: prediction requests over Kafka answered by the hub (`predict`)."""
