"""A refusal of a principal's rights is named by what was refused, however it is wrapped,
and logged without its traceback (the hub worker's end; tests/integration/
test_secured_broker.py runs it against the secured broker)."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from gun_contract.kafka.refusals import refused_resource, rights_refusal
from gun_hub.cli.hub_worker import ExpectedEndsWithoutTraceback


@pytest.mark.parametrize(
    ("refusal", "named"),
    [
        (TopicAuthorizationFailedError("gun.requests.cites"), "topic gun.requests.cites"),
        # aiokafka's group coordinator names the topics as a set
        (TopicAuthorizationFailedError({"gun.b", "gun.a"}), "topic gun.a, gun.b"),
        # faust's text when it creates a topic
        (
            TopicAuthorizationFailedError(
                "Cannot create topic: gun-hub-cases-changelog (29): Authorization failed."
            ),
            "topic gun-hub-cases-changelog (creating it)",
        ),
        (GroupAuthorizationFailedError("gun-hub"), "consumer group gun-hub"),
        (
            TransactionalIdAuthorizationFailed("gun-hub-publisher-0"),
            "transactional id gun-hub-publisher-0",
        ),
        (GroupAuthorizationFailedError(), "consumer group"),
    ],
)
def test_what_was_refused_is_named(refusal: KafkaError, named: str) -> None:
    assert refused_resource(refusal) == named


def _raise(error: BaseException, cause: BaseException | None) -> None:
    raise error from cause


def _raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
    """``error`` as raised (with its traceback), from ``cause``."""
    try:
        _raise(error, cause)
    except BaseException as caught:  # noqa: BLE001 - it is returned, a traceback to log
        return caught
    raise AssertionError("not raised")


def test_a_refusal_is_found_under_what_wraps_it() -> None:
    refusal = _raised(GroupAuthorizationFailedError("gun-hub"))
    wrapped = _raised(KafkaError("Unexpected error during coordination"), refusal)
    assert rights_refusal(wrapped) is refusal
    assert rights_refusal(KafkaError("the broker went away")) is None
    assert rights_refusal(None) is None


def _record(error: BaseException) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__)
    return logging.LogRecord("faust", logging.ERROR, __file__, 1, "Crashed", (), exc_info)


def test_a_refusal_and_the_teardown_after_it_are_logged_without_traceback() -> None:
    refusals = ExpectedEndsWithoutTraceback()
    before = _record(_raised(RuntimeError("a bug of its own")))
    assert refusals.filter(before)
    assert before.exc_info is not None  # not a refusal, nor after one: kept
    refused = _record(_raised(TransactionalIdAuthorizationFailed("gun-hub-audit-links-0")))
    assert refusals.filter(refused)
    assert refused.exc_info is None
    assert refused.getMessage() == "Crashed"
    teardown = _record(_raised(RuntimeError("Event loop is closed")))
    assert refusals.filter(teardown)
    assert teardown.exc_info is None
