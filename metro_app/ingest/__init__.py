"""Ingest: the hub loop (poll, validate, store, dead-letter, commit), record validation, the control topic.

`loop` holds `HubLoop` and its dead-letter sink, `validate` the checks of one record, `control`
the control-topic loop (commands and training events), `runloop` the step-until-stopped helper
every consumer loop shares.
"""
