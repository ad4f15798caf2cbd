"""The contract every party shares: messages, envelope, keys, topics, Kafka and SQLite plumbing.
Imports nothing of gun_hub, adapters, partner_sim or gun_tools."""
