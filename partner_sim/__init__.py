"""A partner administration's own system, simulated: documents, quantity ledger, HTTP API.
May import: gun_contract only; never gun_hub, adapters or gun_tools.

Each authority's simulator is its own process (``gun-hub partner-sim <authority>``) with
its own store, so tests and demos exercise the adapters over real HTTP against a real
ledger. The API is modelled on CERTEX quantity management: check, reserve (restating the
declaration's whole position), write off, delete.
"""
