"""A clearance system that cancels a submission (a shutdown, a timeout) while the
producer is still connecting leaves no connection to the broker behind.

Found as an error in CI: a test cancelled its submitting task, the cancellation landed in
the producer's start, and the open sockets surfaced as ResourceWarnings in a later test."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from gun_tools.clearance_stand_in import submit_declarations
from tests.builders import declaration_xml

pytestmark = pytest.mark.broker


async def test_a_submission_cancelled_while_connecting_leaves_no_connection_open(
    kafka_bootstrap: str,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        # Cancelled sooner or later: the early ones land in the bootstrap (metadata
        # connection), the later ones in the sender's start or the send.
        for delay_ms in (0, 1, 2, 3, 5, 8, 12, 20, 30, 50):
            submitting = asyncio.create_task(
                submit_declarations(
                    kafka_bootstrap,
                    "gun.test.cancelled",
                    [declaration_xml(reference="26FRCANCEL0000001")],
                )
            )
            await asyncio.sleep(delay_ms / 1000)
            submitting.cancel()
            await asyncio.gather(submitting, return_exceptions=True)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
