"""A decision's version header is bytes anyone writing the outbox (or gun.decisions,
read back when a lane is taken) chooses. ``published_memory.version_number`` guards ``int`` with
``bytes.isdigit`` only: a header of 5,000 ASCII digits passes it, and ``int`` refuses it
(Python's 4,300-digit limit for a string conversion) with a ValueError. In
``_publish_batch`` it escapes the lane (no KafkaError), ``_note_failure`` stops the
publisher and the worker ends; read back from gun.decisions at a taking it escapes
``_take`` the same way. Restarted, the worker reads the same record again: every replica
the partition goes to stops. Such a version is no number: never superseded, never a
duplicate of anything (the record does not open, and is dead-lettered as unreadable)."""

from __future__ import annotations

from gun_hub.runtime.published_memory import Published, PublishedMemory

HUGE = b"9" * 5000


def test_an_outbox_decision_with_a_version_of_5000_digits_is_judged_not_a_number() -> None:
    memory = PublishedMemory(capacity=4)
    memory.add((b"A", b"5"))
    assert memory.refusal((b"A", HUGE)) is None
    assert memory.refusal((b"B", HUGE)) is None


def test_a_decision_read_back_with_a_version_of_5000_digits_is_remembered_by_count() -> None:
    memory = PublishedMemory(capacity=4)
    memory.remember(Published((b"A", HUGE), b"", 0, 12))
    assert (b"A", HUGE) in memory
    assert memory.highest(b"A") is None
