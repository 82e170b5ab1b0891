"""Deploying the hub: background jobs for `metro-app submit/jobs/cancel` (`jobs`) and the streamsx
topology (`topology`).
"""
