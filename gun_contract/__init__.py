"""The contract every party shares: messages, envelope and keys, topics, dead letters, Kafka and SQLite plumbing.
Imports nothing of gun_hub, adapters, partner_sim or gun_tools."""
