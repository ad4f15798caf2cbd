"""A principal granted Describe on its consumer group but not Read is named at the start
(gun_contract/kafka/refusals.py, a heartbeat of no member to any broker; the secured
broker's test runs it for real). The check used to give up at the first heartbeat that
could not be sent, with a warning: a broker restarting as the worker started, and the
worker waited for partitions without a word, as before the check existed (stop 45's open
item). It now asks again, another broker each time, a few times."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, KafkaError

from gun_contract.kafka.refusals import _check_joining

NOT_READ = 30  # GROUP_AUTHORIZATION_FAILED
UNKNOWN_MEMBER = 25  # read granted: the broker knows no member of generation -1


@dataclass
class Answer:
    error_code: int


@dataclass
class Brokers:
    """Answers the heartbeats in turn: an error is raised as the client raises it."""

    answers: list[KafkaError | Answer]
    asked: list[int] = field(default_factory=list)

    def get_random_node(self) -> int:
        return len(self.asked)

    async def send(self, node: int, _request: object) -> Answer:
        self.asked.append(node)
        answer = self.answers.pop(0)
        if isinstance(answer, KafkaError):
            raise answer
        return answer


async def test_a_refusal_after_a_heartbeat_that_could_not_be_sent_is_still_named() -> None:
    brokers = Brokers([KafkaConnectionError("restarting"), Answer(NOT_READ)])
    with pytest.raises(GroupAuthorizationFailedError, match="gun-hub"):
        await _check_joining(brokers, "gun-hub", backoff_s=0)
    assert len(brokers.asked) == 2


async def test_a_granted_read_ends_the_check_at_its_first_answer() -> None:
    brokers = Brokers([Answer(UNKNOWN_MEMBER)])
    await _check_joining(brokers, "gun-hub", backoff_s=0)
    assert len(brokers.asked) == 1


async def test_no_heartbeat_sent_at_all_is_a_warning_not_a_wait_for_ever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    brokers = Brokers([KafkaConnectionError("down")] * 3)
    with caplog.at_level(logging.WARNING, logger="gun_contract.kafka.refusals"):
        await _check_joining(brokers, "gun-hub", backoff_s=0)
    assert len(brokers.asked) == 3
    [said] = [r.getMessage() for r in caplog.records]
    assert "could not check that this principal may join consumer group gun-hub" in said
