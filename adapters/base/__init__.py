"""The adapter seam: what every authority's adapter is made of."""

from adapters.base.spec import AdapterSpec, PartnerPort, load_adapter

__all__ = ["AdapterSpec", "PartnerPort", "load_adapter"]
