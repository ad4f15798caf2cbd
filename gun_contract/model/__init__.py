"""Pydantic models of what crosses the hub: declarations, partner exchanges, decisions."""
