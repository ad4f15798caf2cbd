"""The hub's runtime: the faust app and its agents, the publisher, deliveries, offsets, sweeps.
May import: gun_contract and gun_hub (not gun_hub.cli); faust and aiokafka live here.

Besides the faust app, it owns the commit rule (only past records the hub handled)
and the watchdog that reads again a record faust dropped. The pipeline never imports it.
"""
