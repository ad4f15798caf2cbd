"""Kafka plumbing every process shares: client settings, TLS, topic admin, the ACL plan.
May import: aiokafka and gun_contract."""
