"""The intake gateway without a broker, for unit tests: it seals exactly as in production
(the gateway party's real keys), and keeps what it would have published."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from gun_contract.envelope import Envelope
from gun_hub.gateway.lodging import DeclarationCheck, Gateway
from gun_hub.gateway.sender import DeclarationSender


@dataclass(frozen=True)
class Delivered:
    """Where a broker would have put a record (what aiokafka's RecordMetadata holds)."""

    partition: int
    offset: int


class RecordingSender(DeclarationSender):
    """A :class:`DeclarationSender` whose broker is a list; ``confirm`` False makes it
    fail every delivery the way an unreachable broker does."""

    def __init__(self, envelope: Envelope | None = None, topic: str = "gun.declarations") -> None:
        super().__init__("unused:9092", topic, envelope)
        self.published: list[tuple[str, bytes]] = []
        self.confirm = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, value: bytes, reference: str) -> asyncio.Future[Any]:
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.confirm:
            self.published.append((reference, value))
            delivery.set_result(Delivered(partition=0, offset=len(self.published) - 1))
        else:
            delivery.set_exception(KafkaTimeoutError())
        return delivery

    def references(self) -> list[str]:
        return [reference for reference, _ in self.published]


def gateway_with(sender: RecordingSender, *, max_bytes: int = 1024 * 1024) -> Gateway:
    return Gateway(sender, DeclarationCheck(max_bytes), max_in_flight=4, publish_timeout_s=2)
