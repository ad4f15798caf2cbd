"""The hub's decision logic, pure: cases, routing, risk, decisions, rollout, override.
May import: gun_contract, gun_hub.domain and gun_hub.ops.facts; no Kafka, faust or web."""
