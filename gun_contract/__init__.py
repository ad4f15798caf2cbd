"""The contract every party shares: models, topics, envelope and keys, dead letters, Kafka, the consume loop, SQLite.
May import: the standard library and third-party libraries, nothing else of the repo."""
