"""The hub's views: what dashboards poll (`catalog`), camera health and fleet buckets (`health`),
figures derived from metrics messages (`figures`).
"""
