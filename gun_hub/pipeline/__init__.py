"""The hub's processing steps as plain classes: state in, records out.

The faust agents in :mod:`gun_hub.runtime.app` only feed them events and send what they return,
so every rule here is testable without Kafka.
"""
