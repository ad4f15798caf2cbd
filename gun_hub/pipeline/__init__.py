"""The hub's processing steps as plain classes: state in, records out.
May import: gun_contract, gun_hub.domain, .xml, .security, .ops, .metrics; never .runtime.

The faust agents in :mod:`gun_hub.runtime.app` only feed them events and send what they return,
so every rule here is testable without Kafka.
"""
