"""The single window's intake gateway: declarations that do not come through Kafka.
May import: gun_contract, gun_hub.xml, .security, .pipeline, .web.

Besides the clearance system, which publishes on ``gun.declarations`` itself, a declarant
system can lodge a declaration over HTTP (:mod:`gun_hub.gateway.http_channel`) or drop it
as a file (:mod:`gun_hub.gateway.file_drop`). Both go through one path
(:mod:`gun_hub.gateway.lodging`): the hub's own intake checks, then sealed with the
gateway party's keys (ADR 0011) and published on the declarations topic, where the hub
takes it like any other. From there on nothing tells the channels apart: the same
declaration gets the same decision whichever way it came (docs/intake-channels.md).
"""
