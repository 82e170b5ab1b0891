"""Training: retrain (`retrain`), its settings (`settings`), judging a candidate (`evaluate`), the
field set of labelled images (`fieldset`), retrain jobs in a background thread (`jobs`), models
trained elsewhere (`modelimport`).
"""
