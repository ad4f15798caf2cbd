"""The conformance kit: certify an authority's adapter against its partner system.
May import: gun_contract and adapters.

``gun-hub conformance <authority>`` plays the hub against a running adapter and partner
system and prints a pass/fail table (see docs/conformance.md).
"""
