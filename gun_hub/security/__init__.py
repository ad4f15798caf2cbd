"""The hub's own security: audit chain, web authentication, operator actions, key factory.
May import: gun_contract (whose security holds the keys and envelope every party uses)."""
