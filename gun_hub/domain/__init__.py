"""The hub's decision logic, pure: cases, routing, risk, decisions, rollout, override.
May import: gun_contract and gun_hub.domain; no Kafka client, faust or web server."""
