"""Change data capture, an extra (`pip install 'edge-mnist[cdc]'`): digits in PostgreSQL (`digitdb`),
Kafka Connect with Debezium (`connect`, `debezium`), change events (`events`, `stream`),
online evaluation (`evaluate`), the hub's labels as a change stream (`labels`), and the
`edge-mnist db|cdc|evaluate` subcommands (`commands`).
"""
