"""Rollout: publishing a model on the models topic (`publish`), the canary rule (`policy`), the shadow
stage's paired rule (`paired`), the watcher
that promotes or rolls back (`watcher`). Rollout rows are kept by `metro_app.store.rollouts`.
"""
