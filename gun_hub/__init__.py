"""The hub's own code, folders in the order of the flow: domain, pipeline, runtime, edges.
May import: gun_contract; never adapters, partner_sim or gun_tools (gun_hub.cli aside).

gun-hub: integration hub for a customs single window (Guichet Unique National); the folder
map and the flow are in docs/architecture.md.
"""

__version__ = "0.1.0"
