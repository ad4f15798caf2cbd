"""Keeps a worker's rollout board (rollout.py) current from the ``hub.rollout`` topic.

A consumer without a group: every hub worker reads every partition of the topic (kept
whole, ADR 0023) from the beginning, then follows it, so a mode set through any worker's officer
listener applies on all of them within a fetch. ``caught_up`` is set once the settings
that were on the topic at start-up are all applied: until then the worker is not ready
and admits no declaration (it would decide with modes that are not the ones in force).

A record that does not open as a setting sealed with the hub's state key is ignored,
logged and counted (``gun_hub_rollout_settings_refused_total``): only the hub's officer
listener sets a mode. So is a hub-sealed setting older than the one its scope holds (a
record copied back onto the topic). Neither is dead-lettered: every worker reads it, and
one record would make as many dead letters as there are workers. Ignoring is enough
because the topic is never cleaned (ADR 0023): the officer's setting stays before the
record for every worker that starts later, not only for those that were running.

A setting sealed with a state key of the hub this process does not hold (a rotation not
deployed here yet) is read again for ``KEY_MISSING_PATIENCE_S``, the key file looked at
each time, and applied if the key comes. If not, it is ignored with a critical line naming
the key (deploy it and restart: the process reads the topic from its start, and the
setting, kept for ever, is applied then). It does not stop the process: the key id is the
record's word, and a record under a made-up one, which anyone allowed to write the topic
can send and which the topic keeps for ever, stopped every worker and the view at every
start (review stop 41, G1). The patience is the follower's, not each record's: spent once,
later records under keys it lacks are ignored at once, so a thousand of them do not hold
the worker unready for hours.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from gun_contract.consume import Batch, consume
from gun_contract.kafka.admin import topic_partitions
from gun_contract.kafka.client import ClientConfig, reached, read_without_group
from gun_contract.security.state_cipher import (
    KEY_MISSING_PATIENCE_S,
    StateCipher,
    StateKeyMissing,
    StateUnreadable,
)
from gun_hub import metrics
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, open_setting

log = logging.getLogger(__name__)

# How often a setting sealed with a state key this process lacks is opened again.
_KEY_LOOK_S = 0.5


class RolloutFollower:
    def __init__(
        self,
        connect: ClientConfig,
        topic: str,
        cipher: StateCipher,
        board: RolloutBoard,
        *,
        key_missing_patience_s: float = KEY_MISSING_PATIENCE_S,
    ) -> None:
        self._connect = connect
        # What is left of the wait for a missing state key, for all records together.
        self._patience_left_s = key_missing_patience_s
        self._topic = topic
        self._cipher = cipher
        self.board = board
        self.caught_up = asyncio.Event()
        self._waiters: list[tuple[RolloutSetting, asyncio.Future[None]]] = []

    async def applied(self, setting: RolloutSetting, timeout_s: float) -> bool:
        """Whether this worker applies ``setting`` (just published) within ``timeout_s``:
        the officer who set it is answered once the modes shown are the new ones."""
        if setting in self.board.settings():
            return True
        waiter = asyncio.get_running_loop().create_future()
        entry = (setting, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return False
        finally:
            self._waiters.remove(entry)
        return True

    async def run(self) -> None:
        await read_without_group(self._connect, "gun-hub-rollout", self._assign, self.follow)

    async def follow(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        targets = await consumer.end_offsets(partitions)

        async def apply_all(batch: Batch) -> None:
            for records in batch.values():
                for record in records:
                    # A record it cannot use is ignored, one under a key this process
                    # lacks once the key was waited for.
                    await self.apply_waiting_for_the_key(record)

        async def check_caught_up() -> None:
            if not self.caught_up.is_set() and await reached(consumer, targets):
                log.info("rollout modes read: %d setting(s)", len(self.board.settings()))
                self.caught_up.set()

        await consume(consumer, apply_all, commit=False, after_poll=check_caught_up)

    async def apply_waiting_for_the_key(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> RolloutSetting | None:
        """:meth:`apply`, tried again while ``record`` is sealed with a state key this
        process does not hold (each try looks at the key file), while the follower's
        patience lasts; then the record is ignored, a critical line naming the key."""
        where = f"{record.topic}/{record.partition}/{record.offset}"
        told = False
        while True:
            try:
                return self.apply(record)
            except StateKeyMissing as missing:
                if self._patience_left_s <= 0:
                    metrics.ROLLOUT_SETTINGS_REFUSED.inc()
                    log.critical(
                        "rollout setting at %s not applied: %s; this process keeps the "
                        "modes it holds: deploy the state key %r to it (the key file every "
                        "hub process shares) and restart it (it reads the modes from the "
                        "start of the topic); a key id nobody holds is a record written by "
                        "hand, which changes nothing",
                        where,
                        missing,
                        missing.kid,
                    )
                    return None
                if not told:  # once, not at every try
                    told = True
                    log.warning(
                        "rollout setting at %s: %s; not applied, read again for up to "
                        "%.0f s in case the key is being deployed",
                        where,
                        missing,
                        self._patience_left_s,
                    )
                pause = min(_KEY_LOOK_S, self._patience_left_s)
                await asyncio.sleep(pause)
                self._patience_left_s -= pause

    def apply(self, record: ConsumerRecord[bytes, bytes]) -> RolloutSetting | None:
        """The setting ``record`` holds, applied; None if it is not one (ignored). Raises
        :class:`StateKeyMissing` for one sealed with a state key this process lacks."""
        where = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            setting = open_setting(self._cipher, record.key or b"", record.value or b"")
        except StateKeyMissing:
            raise  # perhaps this process's deployment, not the record: waited for first
        except (StateUnreadable, ValidationError, ValueError) as refused:
            metrics.ROLLOUT_SETTINGS_REFUSED.inc()
            log.warning("rollout setting at %s ignored: %s", where, refused)
            return None
        if not self.board.apply(setting):
            metrics.ROLLOUT_SETTINGS_REFUSED.inc()
            held = self.board.setting_for(setting.authority, setting.office)
            log.warning(
                "rollout setting at %s ignored: %s %s set at %s is older than the setting "
                "in force, set at %s (a record written again?)",
                where,
                setting.scope,
                setting.mode.value,
                setting.at.isoformat(),
                held.at.isoformat() if held else "?",
            )
            return None
        for awaited, waiter in self._waiters:
            if awaited == setting and not waiter.done():
                waiter.set_result(None)
        office = setting.office or "*"
        for mode in RolloutMode:
            metrics.ROLLOUT_MODE.labels(setting.authority, office, mode.value).set(
                1 if mode is setting.mode else 0
            )
        log.info(
            "rollout: %s is %s (set by %s: %s)",
            setting.scope,
            setting.mode.value,
            setting.officer,
            setting.reason,
        )
        return setting

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        try:
            existing = await topic_partitions(self._connect, self._topic)
        except LookupError:
            raise RuntimeError(
                f"topic {self._topic} does not exist: run gun-hub kafka topics"
            ) from None
        partitions = [TopicPartition(self._topic, p) for p in existing]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        return partitions
