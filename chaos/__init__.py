"""Chaos suite of gun-hub: the whole stack under faults, judged by an independent checker.

* :mod:`chaos.orchestrator` runs broker, hub, adapters and partner simulators as processes,
  submits a seeded workload through two Kafka client libraries and injects faults on a
  seeded schedule (:mod:`chaos.faults`);
* :mod:`chaos.checker` proves the invariants from the topics and the partners' ledgers,
  sharing no code with the hub (``docs/chaos.md``).

Run it with ``python -m chaos run --declarations N --seed S --out DIR`` or ``./tasks chaos``.
"""
