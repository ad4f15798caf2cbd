"""Kafka plumbing shared by every component: the local broker launcher, topic admin."""
