"""The contract every party shares: models, topics, envelope, keys, dead letters, Kafka, SQLite.
May import: the standard library and third-party libraries, nothing else of the repo."""
