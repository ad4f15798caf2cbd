"""Lodging by file: ``gun-hub intake watch DIR``.

The folder (docs/intake-channels.md)::

    DIR/NAME.xml                 a complete declaration, ready to be taken
    DIR/NAME.xml.part, DIR/.x    being written: never taken (any name not ending .xml)
    DIR/processing/ID--NAME.xml  claimed: being lodged
    DIR/done/ID--NAME.xml        lodged, beside ID--NAME.xml.receipt.json (reference,
                                 version, partition and offset on the declarations topic)
    DIR/rejected/ID--NAME.xml    refused, beside its receipt (the hub's kind and reason)

``ID`` is the claim's UTC time and a random suffix: the same NAME dropped twice makes two
lodgements whose receipts never overwrite each other.

**Complete files only.** A writer writes ``NAME.xml.part`` and renames it to ``NAME.xml``
(atomic within one file system). For a writer that cannot rename, a ``*.xml`` is taken
only once its size and modification time have not changed for
``GUN_HUB_GATEWAY__DROP_SETTLE_S``.

**Once, across crashes.** A file is claimed by an atomic rename into ``processing/``,
published (acks=all, idempotent producer), its receipt written (fsynced, renamed into
place), then moved next to it. Whatever the watcher was doing when it died, the file is
in exactly one folder. At start-up (and on every pass) a file left in ``processing/`` is
moved on if its receipt exists, and published again otherwise. Published again, it is a
new envelope with a new ``jti`` (no replay), carrying the same reference and version: the
hub has either decided that version already or will decide the first copy it reads, and
ignores the other as an equal version (contract section 4, recorded as
``IGNORED_STALE_VERSION``). A crash can therefore cost a second record, never a second
decision; and it never loses a file, since nothing is removed before its receipt exists.

One watcher per folder: a second one on the same folder is refused (a lock file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gun_hub.gateway.lodging import Gateway, Lodged, LodgementRefused, Lodger, PublishFailed
from gun_hub.xml.declaration_codec import sniff_identity

log = logging.getLogger(__name__)

CHANNEL = "file"
READY_SUFFIX = ".xml"
RECEIPT_SUFFIX = ".receipt.json"
LOCK_NAME = ".gun-hub-watch.lock"
_SEPARATOR = "--"
UNREADABLE = "FILE_UNREADABLE"


class DropFolderBusy(RuntimeError):
    """Another watcher holds the folder."""


def _claim_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole, or is absent: written aside, synced, renamed."""
    aside = path.with_name(f".{path.name}.tmp")
    with aside.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    aside.replace(path)


@dataclass(frozen=True, slots=True)
class DropFolder:
    """The folder's layout and the moves between its parts (no Kafka here)."""

    root: Path

    @property
    def processing(self) -> Path:
        return self.root / "processing"

    @property
    def done(self) -> Path:
        return self.root / "done"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    def prepare(self) -> None:
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder")
        for part in (self.processing, self.done, self.rejected):
            part.mkdir(exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a watcher runs; the kernel lets go of it when the process dies."""
        with (self.root / LOCK_NAME).open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DropFolderBusy(f"another watcher is watching {self.root}") from None
            yield

    def waiting(self) -> dict[str, tuple[int, int, int]]:
        """Files ready to be looked at: regular ``*.xml`` files (no symlink, no dot file)
        of the folder itself, with (size, modification time, inode)."""
        found: dict[str, tuple[int, int, int]] = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(READY_SUFFIX):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat(follow_symlinks=False)
                    found[name] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        return found

    def claim(self, name: str) -> Path | None:
        """Move ``name`` into processing/ under a name of its own; None if it is gone."""
        claimed = self.processing / f"{_claim_id()}{_SEPARATOR}{name}"
        try:
            (self.root / name).rename(claimed)
        except FileNotFoundError:
            return None
        return claimed

    def claimed(self) -> list[Path]:
        """What is in processing/, oldest claim first."""
        return sorted(
            path
            for path in self.processing.iterdir()
            if path.is_file() and not path.name.startswith(".")
        )

    def receipt_of(self, claimed: Path) -> Path | None:
        """The receipt already written for a claimed file (it died before moving on)."""
        for place in (self.done, self.rejected):
            receipt = place / f"{claimed.name}{RECEIPT_SUFFIX}"
            if receipt.is_file():
                return receipt
        return None

    def finish(self, claimed: Path, receipt: dict[str, Any], *, lodged: bool) -> Path:
        """Write the receipt, then move the file beside it: its receipt path."""
        place = self.done if lodged else self.rejected
        path = place / f"{claimed.name}{RECEIPT_SUFFIX}"
        _write_atomically(path, json.dumps(receipt, indent=2, ensure_ascii=False).encode())
        claimed.rename(place / claimed.name)
        return path

    def move_on(self, claimed: Path, receipt: Path) -> None:
        """A claimed file whose receipt exists joins it."""
        claimed.rename(receipt.parent / claimed.name)


def original_name(claimed: Path) -> str:
    return claimed.name.partition(_SEPARATOR)[2] or claimed.name


class Settling:
    """Which files have kept the same size, time and inode for ``settle_s`` seconds."""

    def __init__(self, settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._settle_s = settle_s
        self._clock = clock
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}

    def settled(self, found: dict[str, tuple[int, int, int]]) -> list[str]:
        now = self._clock()
        seen: dict[str, tuple[tuple[int, int, int], float]] = {}
        ready = []
        for name, stamp in found.items():
            before = self._seen.get(name)
            since = before[1] if before is not None and before[0] == stamp else now
            seen[name] = (stamp, since)
            if now - since >= self._settle_s:
                ready.append(name)
        self._seen = seen
        return sorted(ready)


def _read_claimed(claimed: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: enough to tell the file is over the limit."""
    with claimed.open("rb") as source:
        return source.read(limit + 1)


class DropWatcher:
    """Takes complete files from a drop folder and lodges each through the gateway."""

    def __init__(
        self,
        folder: DropFolder,
        gateway: Gateway,
        lodger: Lodger,
        *,
        topic: str,
        poll_s: float = 1.0,
        settle_s: float = 1.0,
        batch: int = 50,
    ) -> None:
        self.folder = folder
        self._gateway = gateway
        self._lodger = lodger
        self._topic = topic
        self._poll_s = poll_s
        self._settling = Settling(settle_s)
        self._batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: what a crash left in processing/ first, then new files.
        A batch under way when ``stop`` is set is finished first."""
        while not stop.is_set():
            worked = await self.pass_once()
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    async def pass_once(self) -> int:
        """One look at the folder; the number of files handled."""
        handled = 0
        left = self.folder.claimed()
        if left:
            log.info("%d file(s) left in %s: lodged again", len(left), self.folder.processing)
        for start in range(0, len(left), self._batch):
            handled += await self._lodge_all(left[start : start + self._batch])
        settled = self._settling.settled(self.folder.waiting())[: self._batch]
        claimed = [path for path in map(self.folder.claim, settled) if path is not None]
        return handled + await self._lodge_all(claimed)

    async def _lodge_all(self, claimed: list[Path]) -> int:
        results = await asyncio.gather(*(self._lodge_one(path) for path in claimed))
        return sum(results)

    async def _lodge_one(self, claimed: Path) -> int:
        """1 once the file has left processing/; 0 when it stays to be tried again."""
        try:
            receipt = self.folder.receipt_of(claimed)
            if receipt is not None:
                self.folder.move_on(claimed, receipt)
                return 1
            try:
                data = await asyncio.to_thread(_read_claimed, claimed, self._gateway.max_bytes)
            except OSError as err:
                await self._reject(claimed, b"", UNREADABLE, f"cannot read: {err.strerror}")
                return 1
            try:
                lodged = await self._gateway.lodge(data, self._lodger, channel=CHANNEL)
            except LodgementRefused as refusal:
                await self._reject(claimed, data, refusal.kind, refusal.reason)
                return 1
            except PublishFailed as failure:
                log.warning("%s stays in processing/ to be lodged again: %s", claimed, failure)
                return 0
            await asyncio.to_thread(
                self.folder.finish,
                claimed,
                self._lodged_receipt(claimed, data, lodged),
                lodged=True,
            )
        except OSError as err:  # the folder itself (full disk, permissions): try again
            log.warning("%s stays in processing/ to be tried again: %s", claimed, err)
            return 0
        return 1

    def _receipt(self, claimed: Path, data: bytes) -> dict[str, Any]:
        return {
            "file": original_name(claimed),
            "lodgement": claimed.name.partition(_SEPARATOR)[0],
            "channel": CHANNEL,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }

    def _lodged_receipt(self, claimed: Path, data: bytes, lodged: Lodged) -> dict[str, Any]:
        return {
            **self._receipt(claimed, data),
            "result": "lodged",
            "reference": lodged.reference,
            "version": lodged.version,
            "declarant": lodged.declarant,
            "topic": self._topic,
            "partition": lodged.partition,
            "offset": lodged.offset,
            "status": f"/declarations/{lodged.reference}",
        }

    async def _reject(self, claimed: Path, data: bytes, kind: str, reason: str) -> None:
        receipt: dict[str, Any] = {
            **self._receipt(claimed, data),
            "result": "rejected",
            "kind": kind,
            "reason": reason,
        }
        identity = sniff_identity(data)
        if identity is not None:  # to tell the declarant which declaration it was
            receipt.update(reference=identity.reference, version=identity.version)
        log.info("%s rejected: %s", claimed.name, kind)
        await asyncio.to_thread(self.folder.finish, claimed, receipt, lodged=False)
