"""Operations: what traders, customs officers and operators see of the hub.
May import: gun_contract, gun_hub.domain, gun_hub.security, gun_hub.metrics.

* :mod:`facts`, :mod:`lag` (and :mod:`gun_contract.health`): the records the views
  are made of;
* :mod:`view`: the read model (status per declaration, statistics), fed from Kafka;
* :mod:`lag_monitor`: consumer lag of every group, on ``gun.ops.lag`` and ``/metrics``.
"""
