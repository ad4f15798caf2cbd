"""Partner adapters: one package per authority behind the seam in :mod:`adapters.base`.
May import: gun_contract and adapters; never gun_hub, partner_sim or gun_tools.

An adapter consumes its authority's request topic, opens each envelope, asks the partner
administration's own system, maps the answer to the hub's verdicts and replies on its
response topic. ``adapters.<authority>`` exposes ``ADAPTER``, an :class:`AdapterSpec`.
"""
