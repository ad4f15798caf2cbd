"""The hub's runtime around faust: what faust itself does not get right for us.

Owns the commit rule (only past records the hub handled) and the watchdog that reads
again a record faust dropped. May import gun_contract.kafka and the standard library; the
pipeline never imports it.
"""
