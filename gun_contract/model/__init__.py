"""Pydantic models of what crosses the hub: declarations, partner exchanges, decisions.
May import: pydantic and gun_contract.model only (the contract's leaf)."""
