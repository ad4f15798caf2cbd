"""The hub's faust worker, ended by a refusal of its principal's rights in one sentence.

A hub started with another principal's credentials (an adapter's ``.env``), or with ACLs
not all granted, is let into the cluster and refused later, inside faust: creating its
leader topic or a changelog, initialising a transactional producer, taking a publisher's
partition. mode logged each with its traceback and exited 1 (carried from review stop
39-O, O4). :class:`HubWorker` keeps the refusal, :class:`RefusalsWithoutTraceback` logs it
in one line, and ``gun-hub hub`` ends with ``cannot start:`` naming what was refused and
whom, exit 2, as for every fault of the configuration (startup.py).
"""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError
from faust.worker import Worker

from gun_contract.kafka.refusals import rights_refusal


class HubWorker(Worker):  # type: ignore[misc]
    """faust's worker, which keeps a refusal of rights that ended its start or its run."""

    refused: KafkaError | None = None

    async def start(self) -> None:
        # mode logs what ends the start with its traceback ("Error: ..."), then exits 1.
        try:
            await super().start()
        except Exception as err:
            refused = rights_refusal(err)
            if refused is None:
                raise
            self.refused = refused
            _REFUSALS.refused = True  # its teardown's tracebacks are not logged either

    def refusal(self) -> KafkaError | None:
        """The refusal of rights that ended this worker (its start, or a crash), if any."""
        return self.refused or rights_refusal(self.crash_reason)


class RefusalsWithoutTraceback(logging.Filter):
    """A record about a refusal of rights keeps its message, not its traceback: the
    refusal is the configuration's, said once more, in a sentence, as the process ends.
    So does every record after it: the worker's teardown, which faust logs with
    tracebacks (each agent it cancels; mode stopping a thread whose loop it closed)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.refused and record.exc_info:
            self.refused = rights_refusal(record.exc_info[1]) is not None
        if self.refused:
            record.exc_info = None
            record.exc_text = None
        return True


# One for every handler (what one saw, all saw) and for the worker, which tells it of a
# refusal that ended its start (nothing logs that one).
_REFUSALS = RefusalsWithoutTraceback()


def log_refusals_without_traceback() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_REFUSALS)
