"""The adapter seam: what every authority's adapter is made of.
May import: gun_contract and adapters.base."""

from adapters.base.spec import AdapterSpec, PartnerPort, load_adapter

__all__ = ["AdapterSpec", "PartnerPort", "load_adapter"]
