"""Issue 10, defects 1 to 3 at the envelope: a backlog read late still opens, every size
the contract allows opens, and no value can make ``open`` raise anything but a rejection.

Freshness is judged against the time the broker accepted the record (its log-append
time), so these tests seal a message "in the past" by moving the sealer's clock, then
open it with the broker time of that moment while the reader's clock is hours or days on.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from gun_contract.envelope import ContentType, EnvelopeRejected, broker_accepted_at
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.limits import MAX_DECLARATION_BYTES, max_sealed_payload_bytes, sealed_size
from tests.conftest import envelope_of
from tests.unit.test_envelope_security import PAYLOAD, REQUESTS_DGAL, TOPICS, seal_request

HOUR = 3600
DAY = 24 * HOUR


def sealed_at(keys_dir: Path, monkeypatch: pytest.MonkeyPatch, at: float) -> bytes:
    """A request sealed by a hub whose clock read ``at``."""
    with monkeypatch.context() as clock:
        clock.setattr(time, "time", lambda: at)
        return seal_request(keys_dir)


@pytest.mark.parametrize("age_s", [HOUR + 1, 3 * DAY])
def test_a_message_read_long_after_the_broker_accepted_it_opens(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch, age_s: int
) -> None:
    written = time.time() - age_s
    sealed = sealed_at(keys_dir, monkeypatch, written)
    opened = envelope_of("dgal", TOPICS, keys_dir).open(
        sealed, topic=REQUESTS_DGAL, accepted_at=written + 2
    )
    assert opened.payload == PAYLOAD


def test_without_a_broker_time_an_old_message_is_still_refused(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = sealed_at(keys_dir, monkeypatch, time.time() - 2 * HOUR)
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert rejection.value.kind in {Kind.EXPIRED, Kind.IAT_SKEW}


def test_a_message_the_broker_accepted_long_after_it_was_sealed_is_refused(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy published again later (a replay of an old message) is stale by broker time."""
    sealed = sealed_at(keys_dir, monkeypatch, time.time() - 2 * HOUR)
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope_of("dgal", TOPICS, keys_dir).open(
            sealed, topic=REQUESTS_DGAL, accepted_at=time.time()
        )
    assert rejection.value.kind in {Kind.EXPIRED, Kind.IAT_SKEW}


def test_a_message_issued_in_the_future_of_its_broker_time_is_refused(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = sealed_at(keys_dir, monkeypatch, time.time() + 600)
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope_of("dgal", TOPICS, keys_dir).open(
            sealed, topic=REQUESTS_DGAL, accepted_at=time.time()
        )
    assert rejection.value.kind is Kind.IAT_SKEW


def test_only_a_log_append_time_counts_as_broker_time() -> None:
    assert broker_accepted_at(1_700_000_000_000, 1) == 1_700_000_000.0
    assert broker_accepted_at(1_700_000_000_000, 0) is None  # CreateTime: producer's choice
    assert broker_accepted_at(None, 1) is None
    assert broker_accepted_at(-1, 1) is None


@pytest.mark.parametrize("size", [80_000, MAX_DECLARATION_BYTES, 2 * MAX_DECLARATION_BYTES])
def test_every_size_the_contract_allows_seals_and_opens(keys_dir: Path, size: int) -> None:
    payload = b"<x>" + b"a" * (size - 7) + b"</x>"
    sealed = seal_request(keys_dir, payload)
    assert len(sealed) <= sealed_size(len(payload))
    opened = envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL)
    assert opened.payload == payload


def test_the_largest_sealable_payload_fits_the_record_limit(keys_dir: Path) -> None:
    from gun_contract.limits import MAX_RECORD_BYTES

    largest = max_sealed_payload_bytes()
    assert sealed_size(largest) <= MAX_RECORD_BYTES
    assert largest >= 4 * MAX_DECLARATION_BYTES


def _compact(header: bytes, parts: int) -> bytes:
    encoded = base64.urlsafe_b64encode(header).rstrip(b"=")
    return b".".join([encoded] + [b"AAAA"] * (parts - 1))


POISON = {
    "nested brackets": b"[" * 3000,
    "jwe header of nested brackets": _compact(b"[" * 3000, 5),
    "jwe header of nested objects": _compact(b'{"a":' * 3000, 5),
    "jws-shaped": _compact(b"[" * 3000, 3),
    "random bytes": bytes(range(256)) * 10,
    "empty": b"",
    "dots only": b"....",
    "invalid utf-8 header": _compact(b"\xff\xfe\xfd", 5),
    "huge header": _compact(b'{"alg":"' + b"A" * 100_000 + b'"}', 5),
}


@pytest.mark.parametrize("value", POISON.values(), ids=POISON.keys())
def test_no_value_makes_open_raise_anything_but_a_rejection(keys_dir: Path, value: bytes) -> None:
    with pytest.raises(EnvelopeRejected):
        envelope_of("dgal", TOPICS, keys_dir).open(value, topic=REQUESTS_DGAL)


def test_a_large_message_is_sealed_with_its_content_type(keys_dir: Path) -> None:
    payload = b"{" + b" " * 200_000 + b"}"
    sealed = envelope_of("hub", TOPICS, keys_dir).seal(
        payload, recipient="dgal", topic=REQUESTS_DGAL, content_type=ContentType.JSON
    )
    assert (
        envelope_of("dgal", TOPICS, keys_dir).open(sealed, topic=REQUESTS_DGAL).payload == payload
    )
