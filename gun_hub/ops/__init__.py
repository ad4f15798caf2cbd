"""Operations: what traders, customs officers and operators see of the hub.

* :mod:`facts`, :mod:`health`, :mod:`lag`: the records the views are made of;
* :mod:`view`: the read model (status per declaration, statistics), fed from Kafka;
* :mod:`lag_monitor`: consumer lag of every group, on ``gun.ops.lag`` and ``/metrics``.
"""
