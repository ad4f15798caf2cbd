"""A keyed topic grown while the hub runs stops the worker before it reads the new
partitions (review stop 37, K3).

The start-up refuses keyed topics of another partition count than ``kafka.partitions``
(gun_contract/kafka/admin.py): the hub's tables, claims, requests and answers are
co-partitioned with the declarations. A topic grown afterwards (an operator, a Strimzi
KafkaTopic edited) is seen by the group's leader at its next metadata refresh, which
rebalances, and faust hands the new partitions out as a group of their own. Read, a
declaration of such a partition sent its claim's verdict, requests and outbox records to
partition numbers the other topics lack: refused by the producer, dead-lettered, the
declaration held for good, while the worker looked healthy.

So every assignment is checked first, inside the group's assignment callback (no broker
round trip: the consumer's metadata, refreshed for this rebalance, and the assignment
itself say it), and a grown topic stops the worker with the start-up's words
(``HubApp`` crashes on a failure there, before faust resumes a partition). Nothing of the
new partitions is read or committed: their records wait in the log until the operator
grows every keyed topic to the count, sets ``GUN_HUB_KAFKA__PARTITIONS`` and starts the
hub again, as docs/deployment.md ("Partitions") says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Coroutine, Iterable
from typing import Any

from faust.types import TP

from gun_contract.kafka.admin import partition_count_mismatch

log = logging.getLogger(__name__)

KnownCount = Callable[[str], int | None]


def counts_other_than(
    assigned: Iterable[TP], keyed: Collection[str], partitions: int, known_count: KnownCount
) -> dict[str, int]:
    """Each keyed topic whose partition count is not ``partitions``, with its count.

    ``known_count``: the count in the consumer's metadata (None: a topic it does not
    read). An assigned partition numbered ``partitions`` or above proves a grown topic
    even where the metadata does not say it (at least that many partitions, then)."""
    found: dict[str, int] = {}
    for topic in keyed:
        count = known_count(topic)
        if count and count != partitions:
            found[topic] = count
    for tp in assigned:
        if tp.topic in keyed and tp.partition >= partitions:
            found[tp.topic] = max(found.get(tp.topic, 0), tp.partition + 1)
    return found


def refuse_other_counts(
    keyed: Collection[str], partitions: int, known_count: KnownCount
) -> Callable[[set[TP]], Coroutine[Any, Any, None]]:
    """What ``HubApp.before_assigning`` runs first: raises
    :class:`~gun_contract.kafka.admin.PartitionCountMismatch` on an assignment that
    includes, or comes with, a keyed topic of another count."""
    wanted = frozenset(keyed)

    async def check(assigned: set[TP]) -> None:
        found = counts_other_than(assigned, wanted, partitions, known_count)
        if found:
            refused = partition_count_mismatch(found, partitions)
            # The one line an operator looks for in the pod's last log.
            log.critical("cannot go on: %s", refused)
            raise refused

    return check
