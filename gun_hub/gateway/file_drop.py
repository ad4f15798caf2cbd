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

**No symlink is followed, at any depth.** A depositor can write the folder, so it can
rename or replace anything in it, ``processing/``, ``done/`` and ``rejected/`` included,
and swap a file it dropped for a link between two looks. The sub-folders are therefore
the watcher's own (made by it, ``processing/`` 0700, ``done/`` and ``rejected/`` 0750 so
the folder's group reads its receipts), opened once per pass without following a link and
checked (a folder, the watcher's, writable by nobody else); every move, receipt and read
of that pass goes through those descriptors, never through a path a depositor could
change meanwhile. A claimed file is opened without following a link and read only if it
is a regular file. A sub-folder that fails the check stops the watcher taking files
(logged, ``gun_hub_gateway_drop_folder_refused`` 1, ``/readyz`` 503) until it is mended:
it is evidence for an operator, not something to repair by itself (review stop 37-i, 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from gun_contract.counters import export_at_zero
from gun_hub.gateway.lodging import (
    LODGEMENTS,
    Gateway,
    Lodged,
    LodgementRefused,
    Lodger,
    PublishFailed,
)
from gun_hub.xml.declaration_codec import sniff_identity

log = logging.getLogger(__name__)

CHANNEL = "file"
READY_SUFFIX = ".xml"
RECEIPT_SUFFIX = ".receipt.json"
LOCK_NAME = ".gun-hub-watch.lock"
_SEPARATOR = "--"
UNREADABLE = "FILE_UNREADABLE"
NOT_REGULAR = "FILE_NOT_REGULAR"
NAME_TOO_LONG = "FILE_NAME_TOO_LONG"
NAME_NOT_UTF8 = "FILE_NAME_NOT_UTF8"
# processing/ is the watcher's alone; the depositors read their receipts in done/ and
# rejected/ through the folder's group, and nobody but the watcher writes any of them.
_PART_MODES = {"processing": 0o700, "done": 0o750, "rejected": 0o750}
# A receipt is the depositors' only answer: readable by whoever may enter done/ and
# rejected/, whose 0750 (the folder's group) keeps everybody else out. Not 0640: a receipt
# takes the watcher's group, not the depositors' (done/ and rejected/ keep no setgid bit),
# and the depositors could not read it (a review of stop 56).
_RECEIPT_MODE = 0o644
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a pipe a depositor slipped in returns at once instead of waiting for
# a writer; fstat then tells it is no regular file. On a regular file it matters only under
# a lease, whose breaking the open then does not wait for (EAGAIN, in _PASSING).
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Why a claimed file may fail to open that says nothing of the file: the watcher's own
# want of descriptors or memory (EMFILE, ENFILE: a table any local account can fill;
# ENOMEM, ENOBUFS), or a lease its file server holds for the depositor (EAGAIN: what
# O_NONBLOCK makes of waiting for it; knfsd's delegations, Samba's oplocks). Such a file
# stays in processing/ to be read at a later pass; before the review of the intake
# gateway it was rejected for good as FILE_UNREADABLE.
_PASSING = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC

REFUSED = Gauge(
    "gun_hub_gateway_drop_folder_refused",
    "1 while the watched drop folder's processing/, done/ or rejected/ is refused (a "
    "symlink, not a folder, not the watcher's, writable by others): no file is taken.",
)


class DropFolderBusy(RuntimeError):
    """Another watcher holds the folder."""


class DropFolderUnsafe(RuntimeError):
    """A sub-folder the watcher will not use: the message names it and says why."""


class NotARegularFile(Exception):
    """A claimed entry that is a symlink, a pipe, a device...: never read."""


def _claim_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


# The longest name a folder's file may have (Linux's filesystems), and the longest the
# watcher's own names can carry: the claim adds an id and a separator in processing/, the
# receipt its suffix, the receipt's atomic writing a dot and ".tmp" around that.
_NAME_MAX_BYTES = 255
_CLAIM_PREFIX_BYTES = len(_claim_id()) + len(_SEPARATOR)
_LONGEST_NAME_BYTES = (
    _NAME_MAX_BYTES - _CLAIM_PREFIX_BYTES - len(RECEIPT_SUFFIX) - len(".") - len(".tmp")
)
# What a name too long keeps of itself once set aside in rejected/.
_SET_ASIDE_KEEPS_BYTES = 64


def _set_aside_name(name: str, identity: tuple[int, int, int]) -> str:
    """A short name for a file whose own cannot be used, the same at every try of the
    same file (a crash between its receipt and its move leaves one receipt, rewritten),
    another for a file dropped again under the same name: a digest of the name and of
    the file's device, inode and modification time, then the name's first bytes."""
    raw = os.fsencode(name)
    digest = hashlib.sha256(raw + repr(identity).encode()).hexdigest()[:16]
    kept = raw[:_SET_ASIDE_KEEPS_BYTES].decode(errors="ignore")
    return f"{digest}{_SEPARATOR}{kept}{READY_SUFFIX}"


def _shown(name: str) -> str:
    """A file name as a receipt and a log show it: bytes that are not UTF-8 escaped."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _logged(name: str | Path) -> str:
    """A file name (or a path ending in one) as the log shows it: as a receipt does, and on
    one line, its control characters escaped. A depositor chooses it, line feeds and
    terminal escapes included, and the text log writes messages raw (review of the intake
    gateway: a name wrote forged lines into the watcher's log, or escape sequences into
    the terminal of an operator running it by hand)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in _shown(str(name))
    )


def _why_unusable(name: str, longest: int) -> str | None:
    """Why a file's name cannot be carried through the watcher's own names: too long
    for them, or not UTF-8 (its receipt could not name it); None if it can."""
    raw = os.fsencode(name)
    try:
        raw.decode()
    except UnicodeDecodeError:
        return f"{NAME_NOT_UTF8}: its name is not UTF-8"
    if len(raw) > longest:
        return (
            f"{NAME_TOO_LONG}: its name is {len(raw)} bytes, the drop folder takes names of "
            f"at most {_LONGEST_NAME_BYTES}"
        )
    return None


def _why_not_a_folder(root: int, name: str) -> str:
    try:
        found = os.stat(name, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return "is missing"
    return "is a symlink" if stat.S_ISLNK(found.st_mode) else "is not a folder"


def _unlistable(where: Path, err: OSError) -> DropFolderUnsafe:
    return DropFolderUnsafe(
        f"{where} cannot be read ({err.strerror}): no file is taken until it can; the "
        "watcher looks again at each pass"
    )


@contextlib.contextmanager
def _listing(where: Path, descriptor: int | None = None) -> Iterator[Iterator[os.DirEntry[str]]]:
    """The entries of a folder of the drop (through ``descriptor`` when given): an error
    reading it (a share gone, a failing disk) refuses the folder for this pass, and
    never ends the watcher (stop 50's open item)."""
    try:
        with os.scandir(where) if descriptor is None else os.scandir(descriptor) as entries:
            yield entries
    except OSError as err:
        raise _unlistable(where, err) from None


def _open_part(root: int, name: str, where: Path) -> int:
    """``name`` in ``root`` opened as a folder without following a link, once checked to be
    the watcher's alone: its descriptor, or :class:`DropFolderUnsafe`."""
    mend = (
        "no file is taken until it is mended (the watcher makes processing/, done/ and "
        "rejected/ itself when they are absent; docs/intake-channels.md)"
    )
    try:
        part = os.open(name, _DIRECTORY, dir_fd=root)
    except OSError as err:
        why = (
            _why_not_a_folder(root, name)
            if err.errno in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT)
            else f"cannot be opened ({err.strerror})"
        )
        raise DropFolderUnsafe(f"{where} {why}: {mend}") from None
    found = os.fstat(part)
    watcher = os.geteuid()
    why = ""
    if found.st_uid != watcher:
        why = f"belongs to uid {found.st_uid}, not to the watcher's (uid {watcher})"
    elif found.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"is writable by others than the watcher (mode {stat.S_IMODE(found.st_mode):04o})"
    if why:
        os.close(part)
        raise DropFolderUnsafe(f"{where} {why}: {mend}")
    return part


def _write_atomically(directory: int, name: str, data: bytes) -> None:
    """``name`` in ``directory`` holds ``data`` whole, or is absent: written aside, synced,
    renamed; readable by the folder's group whatever the umask."""
    aside = f".{name}.tmp"
    with os.fdopen(os.open(aside, _WRITE, _RECEIPT_MODE, dir_fd=directory), "wb") as out:
        # The mode given to open is narrowed by the umask: under a hardened one (077) no
        # depositor could read its receipt (review of the intake gateway).
        os.fchmod(out.fileno(), _RECEIPT_MODE)
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(aside, name, src_dir_fd=directory, dst_dir_fd=directory)


@dataclass(frozen=True, slots=True)
class DropFolder:
    """The folder's layout and the moves between its parts (no Kafka here)."""

    root: Path

    LONGEST_NAME_BYTES = _LONGEST_NAME_BYTES
    """The longest file name taken (longer ones are set aside in rejected/)."""

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
        """Makes the absent sub-folders (processing/ 0700, done/ and rejected/ 0750, whatever
        the umask) and checks all three: :class:`DropFolderUnsafe` names one that is not
        the watcher's alone."""
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder")
        self._warn_if_entries_are_anyones()
        with self._root() as root:
            for name, mode in _PART_MODES.items():
                try:
                    os.mkdir(name, mode, dir_fd=root)
                    made = True
                except FileExistsError:
                    made = False
                part = _open_part(root, name, self.root / name)
                try:
                    if made:
                        os.fchmod(part, mode)
                finally:
                    os.close(part)

    def _warn_if_entries_are_anyones(self) -> None:
        """A folder others may write without its sticky bit lets any depositor rename or
        delete any entry: the watcher's sub-folders (it stops taking files for everyone
        until they are mended) and another depositor's file before it is claimed (review
        stop 46). Said at start; the folder is the operator's, not refused."""
        mode = self.root.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            log.warning(
                "%s is writable by others than the watcher without the sticky bit (mode "
                "%04o): any depositor may rename the watcher's sub-folders, which stops it "
                "taking files for everyone, or delete another depositor's file before it "
                "is claimed; chmod +t %s (docs/intake-channels.md)",
                self.root,
                stat.S_IMODE(mode),
                self.root,
            )

    @contextlib.contextmanager
    def _root(self) -> Iterator[int]:
        # The folder itself is the operator's choice: a link to it is followed.
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise _unlistable(self.root, err) from None
        try:
            yield root
        finally:
            os.close(root)

    @contextlib.contextmanager
    def opened(self) -> Iterator[OpenDropFolder]:
        """The sub-folders opened and checked for one pass (:class:`DropFolderUnsafe`
        otherwise); closed when the pass ends."""
        with self._root() as root, contextlib.ExitStack() as opened:
            parts = []
            for name in _PART_MODES:
                part = _open_part(root, name, self.root / name)
                opened.callback(os.close, part)
                parts.append(part)
            processing, done, rejected = parts
            yield OpenDropFolder(self, root, processing, done, rejected)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Held while a watcher runs; the kernel lets go of it when the process dies.

        The lock file lies in the folder the depositors write: one that is not the
        watcher's own regular file is refused (:class:`DropFolderUnsafe`, naming it) before
        it is locked (review of the intake gateway: a pipe there hung every start for
        ever, a folder ended it on a traceback, and a depositor's own file, locked by a
        process of its own, was taken for another watcher's)."""
        where = self.root / LOCK_NAME
        # O_NONBLOCK: a pipe opened for writing without a reader fails at once (ENXIO)
        # instead of waiting for one. No effect on a regular file.
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            opened = os.open(where, flags, 0o600)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise DropFolderUnsafe(f"{where} is a symlink: remove it") from None
            if err.errno in (errno.ENXIO, errno.EISDIR):
                raise DropFolderUnsafe(f"{where} is not a regular file: remove it") from None
            raise DropFolderUnsafe(f"{where} cannot be opened ({err.strerror})") from None
        found = os.fstat(opened)
        why = ""
        if not stat.S_ISREG(found.st_mode):
            why = "is not a regular file"
        elif found.st_uid != (watcher := os.geteuid()):
            why = f"belongs to uid {found.st_uid}, not to the watcher's (uid {watcher})"
        if why:
            os.close(opened)
            raise DropFolderUnsafe(
                f"{where} {why}: a depositor may have put it there, look before removing it"
            )
        with os.fdopen(opened, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DropFolderBusy(f"another watcher is watching {self.root}") from None
            yield

    def waiting(self) -> dict[str, tuple[int, int, int]]:
        """Files ready to be looked at: regular ``*.xml`` files (no symlink, no dot file)
        of the folder itself, with (size, modification time, inode)."""
        found: dict[str, tuple[int, int, int]] = {}
        with _listing(self.root) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(READY_SUFFIX):
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    found[name] = (info.st_size, info.st_mtime_ns, info.st_ino)
        return found


@dataclass(frozen=True, slots=True)
class OpenDropFolder:
    """The moves between the folder's parts for one pass, through the sub-folders'
    descriptors (:meth:`DropFolder.opened`): a sub-folder a depositor renames or replaces
    meanwhile is never followed. Paths returned name where things are, for the receipts
    and the logs."""

    folder: DropFolder
    root: int
    processing: int
    done: int
    rejected: int

    def claim(self, name: str) -> Path | None:
        """Move ``name`` into processing/ under a name of its own; None if it is gone."""
        claimed = f"{_claim_id()}{_SEPARATOR}{name}"
        try:
            os.rename(name, claimed, src_dir_fd=self.root, dst_dir_fd=self.processing)
        except FileNotFoundError:
            return None
        return self.folder.processing / claimed

    def claimed(self) -> list[Path]:
        """The regular files in processing/, oldest claim first."""
        with _listing(self.folder.processing, self.processing) as entries:
            names = sorted(
                entry.name
                for entry in entries
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
            )
        return [self.folder.processing / name for name in names]

    def read(self, claimed: Path, limit: int) -> bytes:
        """At most ``limit + 1`` bytes (enough to tell the file is over the limit) of a
        claimed regular file; :class:`NotARegularFile` for anything else, unread."""
        try:
            source = os.open(claimed.name, _READ, dir_fd=self.processing)
        except OSError as err:
            if err.errno == errno.ELOOP:  # what O_NOFOLLOW says of a symlink
                raise NotARegularFile("a symlink") from None
            raise
        with os.fdopen(source, "rb") as opened:
            if not stat.S_ISREG(os.fstat(opened.fileno()).st_mode):
                raise NotARegularFile("not a regular file")
            return opened.read(limit + 1)

    def size(self, claimed: Path) -> int:
        """The size of a claimed file, which :meth:`read` reads only in part when it is
        over the limit."""
        return os.stat(claimed.name, dir_fd=self.processing, follow_symlinks=False).st_size

    def _place(self, lodged: bool) -> tuple[int, Path]:
        if lodged:
            return self.done, self.folder.done
        return self.rejected, self.folder.rejected

    def receipt_of(self, claimed: Path) -> Path | None:
        """The receipt already written for a claimed file (it died before moving on)."""
        name = f"{claimed.name}{RECEIPT_SUFFIX}"
        for lodged in (True, False):
            place, where = self._place(lodged)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(os.stat(name, dir_fd=place, follow_symlinks=False).st_mode):
                    return where / name
        return None

    def finish(self, claimed: Path, receipt: dict[str, Any], *, lodged: bool) -> Path:
        """Write the receipt, then move the file beside it: its receipt path."""
        place, where = self._place(lodged)
        name = f"{claimed.name}{RECEIPT_SUFFIX}"
        _write_atomically(place, name, json.dumps(receipt, indent=2, ensure_ascii=False).encode())
        os.rename(claimed.name, claimed.name, src_dir_fd=self.processing, dst_dir_fd=place)
        return where / name

    def set_aside(self, name: str, short: str, receipt: dict[str, Any], *, claimed: bool) -> Path:
        """A file of the folder itself (or of processing/, ``claimed``) moved to
        rejected/ as ``short``, unread, its receipt written first: its receipt path."""
        receipt_name = f"{short}{RECEIPT_SUFFIX}"
        data = json.dumps(receipt, indent=2, ensure_ascii=False).encode()
        _write_atomically(self.rejected, receipt_name, data)
        source = self.processing if claimed else self.root
        os.rename(name, short, src_dir_fd=source, dst_dir_fd=self.rejected)
        self._unlink_if_already_aside(name, source, short)
        return self.folder.rejected / receipt_name

    def _unlink_if_already_aside(self, name: str, source: int, short: str) -> None:
        """rename(2) of a link onto another link of the same file does nothing, and says
        it succeeded: a depositor who hard-links a file set aside back into the folder
        under its name (same name, same inode: the same short name) had it set aside again
        at every pass, for ever, and enough such links kept every other file waiting
        (review of the intake gateway). The file is in rejected/ already: the name left
        behind is only another way to it, and goes."""
        with contextlib.suppress(FileNotFoundError):
            left = os.stat(name, dir_fd=source, follow_symlinks=False)
            aside = os.stat(short, dir_fd=self.rejected, follow_symlinks=False)
            if os.path.samestat(left, aside):
                os.unlink(name, dir_fd=source)

    def identity(self, name: str, *, claimed: bool) -> tuple[int, int, int, int]:
        """(size, device, inode, modification time) of a file of the folder, or of
        processing/; FileNotFoundError if it is gone."""
        found = os.stat(
            name, dir_fd=self.processing if claimed else self.root, follow_symlinks=False
        )
        return found.st_size, found.st_dev, found.st_ino, found.st_mtime_ns

    def move_on(self, claimed: Path, receipt: Path) -> None:
        """A claimed file whose receipt exists joins it."""
        place, _ = self._place(receipt.parent == self.folder.done)
        os.rename(claimed.name, claimed.name, src_dir_fd=self.processing, dst_dir_fd=place)


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
        export_at_zero(LODGEMENTS, channel=[CHANNEL], result=["lodged", "unpublished"])
        self._lodger = lodger
        self._topic = topic
        self._poll_s = poll_s
        self._settling = Settling(settle_s)
        self._batch = batch
        self.refused: str | None = None  # why the folder is refused, while it is
        self._cannot_take: set[str] = set()  # files a claim failed on, said once
        # The receipts of claimed files the broker confirmed but that could not be written
        # (done/ full or read-only), by claimed name: written at the next pass instead of
        # publishing the file again. Lost with the process: a restart publishes it again,
        # the one record more a crash may cost.
        self._unwritten: dict[str, dict[str, Any]] = {}
        self._not_opened: set[str] = set()  # claimed files not read for a passing reason

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: what a crash left in processing/ first, then new files.
        A batch under way when ``stop`` is set is finished first."""
        while not stop.is_set():
            worked = await self.pass_once()
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._poll_s)

    def not_ready(self) -> list[str]:
        """What stops the watcher taking files, for ``/readyz``."""
        return [] if self.refused is None else [self.refused]

    async def pass_once(self) -> int:
        """One look at the folder; the number of files handled. A refused sub-folder
        stops this pass, not the watcher: it looks again at the next."""
        try:
            with self.folder.opened() as folder:
                return await self._pass(folder)
        except DropFolderUnsafe as unsafe:
            self._refuse(str(unsafe))
            return 0

    def _refuse(self, why: str) -> None:
        if why != self.refused:  # once, not at every look
            log.error("drop folder refused, no file is taken: %s", why)
        self.refused = why
        REFUSED.set(1)

    def _accepted(self) -> None:
        if self.refused is not None:
            log.warning("drop folder %s accepted again: files are taken", self.folder.root)
        self.refused = None
        REFUSED.set(0)

    async def _pass(self, folder: OpenDropFolder) -> int:
        handled = 0
        left = folder.claimed()
        found = self.folder.waiting()
        self._accepted()  # once both listings are read: a refusal they raise is not flapped
        still_claimed = {path.name for path in left}
        for gone in self._unwritten.keys() - still_claimed:  # taken away by hand
            del self._unwritten[gone]
        self._not_opened &= still_claimed
        self._cannot_take &= found.keys()  # taken away: a new file of that name is new
        if left:
            log.info("%d file(s) left in %s: lodged again", len(left), self.folder.processing)
        for start in range(0, len(left), self._batch):
            handled += await self._lodge_all(folder, left[start : start + self._batch])
        settled = self._settling.settled(found)[: self._batch]
        claimed = []
        for name in settled:
            if (why := _why_unusable(name, _LONGEST_NAME_BYTES)) is not None:
                handled += await self._set_aside(folder, name, why, claimed=False)
            elif (path := self._claim(folder, name)) is not None:
                claimed.append(path)
        return handled + await self._lodge_all(folder, claimed)

    def _claim(self, folder: OpenDropFolder, name: str) -> Path | None:
        """``name`` claimed; None if it is gone, or cannot be moved (said once, and left
        where it is: one file's trouble never ends the watcher)."""
        try:
            path = folder.claim(name)
        except OSError as err:
            if name not in self._cannot_take:
                log.warning("%s cannot be taken, left where it is: %s", _logged(name), err)
            self._cannot_take.add(name)
            return None
        self._cannot_take.discard(name)
        return path

    async def _set_aside(
        self, folder: OpenDropFolder, name: str, why: str, *, claimed: bool
    ) -> int:
        """A file whose name the watcher's own names cannot carry (a claim, a receipt),
        set aside in rejected/ unread, under a short name, its receipt naming it whole
        (security probe and review, stop 50: a long name ended the watcher at every
        start, or was taken again at every look with no receipt; one not UTF-8 ended
        it). ``claimed``: found in processing/, claimed by an earlier version."""
        kind, _, reason = why.partition(": ")
        try:
            size, *identity = folder.identity(name, claimed=claimed)
            short = _set_aside_name(name, (identity[0], identity[1], identity[2]))
            receipt = {
                "file": _shown(original_name(Path(name)) if claimed else name),
                "lodgement": short.partition(_SEPARATOR)[0],
                "channel": CHANNEL,
                "bytes": size,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "result": "rejected",
                "kind": kind,
                "reason": f"{reason}: never read; drop it again under another name (set "
                f"aside as {short})",
            }
            await asyncio.to_thread(folder.set_aside, name, short, receipt, claimed=claimed)
        except FileNotFoundError:
            return 0
        except OSError as err:
            log.warning("%s cannot be set aside, left where it is: %s", _logged(name), err)
            return 0
        log.info("%s rejected: %s", _logged(short), kind)
        return 1

    async def _lodge_all(self, folder: OpenDropFolder, claimed: list[Path]) -> int:
        results = await asyncio.gather(*(self._lodge_one(folder, path) for path in claimed))
        return sum(results)

    async def _lodge_one(self, folder: OpenDropFolder, claimed: Path) -> int:
        """1 once the file has left processing/; 0 when it stays to be tried again."""
        # Claimed by an earlier version under a name its receipt cannot carry.
        longest_claimed = _NAME_MAX_BYTES - len(RECEIPT_SUFFIX) - len(".") - len(".tmp")
        if (why := _why_unusable(claimed.name, longest_claimed)) is not None:
            return await self._set_aside(folder, claimed.name, why, claimed=True)
        try:
            receipt = folder.receipt_of(claimed)
            if receipt is not None:
                folder.move_on(claimed, receipt)
                self._unwritten.pop(claimed.name, None)
                return 1
            if (unwritten := self._unwritten.get(claimed.name)) is not None:
                await asyncio.to_thread(folder.finish, claimed, unwritten, lodged=True)
                del self._unwritten[claimed.name]
                return 1
            try:
                data = await asyncio.to_thread(folder.read, claimed, self._gateway.max_bytes)
            except NotARegularFile as what:
                # Swapped for a link (or a pipe) between the look and the claim: set aside
                # unread, so its receipt tells nothing of what it pointed at.
                reason = f"{what}: never read, only regular files are lodged"
                await self._reject(folder, claimed, b"", NOT_REGULAR, reason)
                return 1
            except OSError as err:
                if err.errno in _PASSING:
                    self._not_read_yet(claimed, err)
                    return 0
                await self._reject(folder, claimed, b"", UNREADABLE, f"cannot read: {err.strerror}")
                return 1
            self._not_opened.discard(claimed.name)
            if len(data) > self._gateway.max_bytes:
                # Read up to the limit and one byte only: said of the file, by its size, and
                # with no digest, which of a prefix matches no file anyone has (review of
                # the intake gateway: the receipt gave the prefix's size and digest).
                size = max(len(data), await asyncio.to_thread(folder.size, claimed))
                refusal = self._gateway.too_large(CHANNEL, size)
                await self._reject(folder, claimed, data, refusal.kind, refusal.reason, size)
                return 1
            try:
                lodged = await self._gateway.lodge(data, self._lodger, channel=CHANNEL)
            except LodgementRefused as refusal:
                await self._reject(folder, claimed, data, refusal.kind, refusal.reason)
                return 1
            except PublishFailed as failure:
                log.warning(
                    "%s stays in processing/ to be lodged again: %s", _logged(claimed), failure
                )
                return 0
            # Lodged: from here on only its receipt is owed. Remembered until written, so
            # that a full done/ does not have it published again at every pass (review of
            # the intake gateway: one record per file per second while the disk was full).
            self._unwritten[claimed.name] = self._lodged_receipt(claimed, data, lodged)
            await asyncio.to_thread(
                folder.finish, claimed, self._unwritten[claimed.name], lodged=True
            )
            del self._unwritten[claimed.name]
        except OSError as err:  # the folder itself (full disk, permissions): try again
            if claimed.name in self._unwritten:
                log.warning(
                    "%s lodged, its receipt not written: it stays in processing/ until its "
                    "receipt can be written, not published again: %s",
                    _logged(claimed),
                    err,
                )
            else:
                log.warning("%s stays in processing/ to be tried again: %s", _logged(claimed), err)
            return 0
        return 1

    def _not_read_yet(self, claimed: Path, err: OSError) -> None:
        """A claimed file left in processing/ for the next pass: said once."""
        if claimed.name not in self._not_opened:
            log.warning(
                "%s stays in processing/ to be read at a later pass: %s",
                _logged(claimed),
                err.strerror,
            )
        self._not_opened.add(claimed.name)

    def _receipt(self, claimed: Path, data: bytes, size: int | None = None) -> dict[str, Any]:
        """``size``: the file's, when ``data`` is only its first bytes (no digest then)."""
        return {
            "file": original_name(claimed),
            "lodgement": claimed.name.partition(_SEPARATOR)[0],
            "channel": CHANNEL,
            "bytes": len(data) if size is None else size,
            **({"sha256": hashlib.sha256(data).hexdigest()} if size is None else {}),
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

    async def _reject(
        self,
        folder: OpenDropFolder,
        claimed: Path,
        data: bytes,
        kind: str,
        reason: str,
        size: int | None = None,
    ) -> None:
        receipt: dict[str, Any] = {
            **self._receipt(claimed, data, size),
            "result": "rejected",
            "kind": kind,
            "reason": reason,
        }
        identity = sniff_identity(data)
        if identity is not None:  # to tell the declarant which declaration it was
            receipt.update(reference=identity.reference, version=identity.version)
        log.info("%s rejected: %s", _logged(claimed.name), kind)
        await asyncio.to_thread(folder.finish, claimed, receipt, lodged=False)
