"""What a decision publisher's lane remembers of the decisions it published: enough to
publish each (reference, version) once and none below a version of its reference
published, bounded (issue 12), and where to read it back from when the lane is taken over.

Two bounds, one for each way a decision can come again (ADR 0025 and its addendum of
stop 47):

- **The lane's count**: the last ``capacity`` decisions published, all declaration
  partitions together. A repeat made after a crash follows its original within the
  records the crash left uncommitted; a version of a reference split over partitions
  usually soon after the other.
- **Each origin's window**: per declaration partition whose case decided them (the
  outbox record's ``gun.decision.origin``), its latest ``per_origin`` decisions on this
  lane. A repeat comes from the uncommitted records of *its own* partition: when that
  partition is stuck for long (every worker stopping on it) while the others' decisions
  go on through the lane, the lane's count forgets its last decisions, its window does
  not (it moves as that partition publishes again: a window is counted, never timed, or
  the first answer or deadline of the partition brought back would push out the very
  decisions whose repeats follow it; review of stop 47). All windows together hold
  ``capacity`` decisions at most, the largest giving way first: a stuck partition keeps
  at least its share (the count over the partitions feeding the lane), and the memory is
  twice the count at most, whatever their number.

A lane taken over reads back its latest offsets (the count) and each origin's window,
wherever it lies: the publisher commits, with each transaction's outbox offsets, where
every origin's window lay on the decisions partition (:func:`window_metadata`).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple

from gun_contract.model.verdicts import Outcome

log = logging.getLogger(__name__)

Identity = tuple[bytes, bytes]

# Why a decision of the outbox was not published: the same (reference, version) was (a
# worker announced it again after a crash, or a case on another partition decided it too),
# a higher version of the reference was, or it was decided for another declarant than the
# reference's decisions published (a version lodged in another's name, decided on another
# partition than the reference's case: review stop 38-s, S3).
Refusal = Literal["duplicate", "superseded", "declarant_changed"]
DUPLICATE: Refusal = "duplicate"
SUPERSEDED: Refusal = "superseded"
OTHER_DECLARANT: Refusal = "declarant_changed"


def per_origin_share(capacity: int) -> int:
    """How many decisions each origin's window holds at most, for a lane count of
    ``capacity``: a quarter of it (5,000 by default), which is already more than one
    partition announces in its uncommitted records at the target rate (all windows
    together hold ``capacity`` at most besides)."""
    return max(1, capacity // 4)


def version_number(version: bytes) -> int | None:
    """The version header as a number; None when it is none (such a record does not
    open: its seal is bound to the version, and it is dead-lettered as unreadable). At
    most 18 digits: anyone writing the outbox chooses the header, and 5,000 digits passed
    ``isdigit`` and made ``int`` raise (Python's 4,300-digit limit), which stopped the
    publisher on every replica (review of stop 55)."""
    return int(version) if 0 < len(version) <= 18 and version.isdigit() else None


@dataclass(frozen=True, slots=True)
class Published:
    """One decision published on the lane: what it was, where it came from (the
    declaration partition; None: not said) and its offset on the decisions partition."""

    identity: Identity
    declarant: bytes = b""
    origin: int | None = None
    offset: int = -1
    # Its outcome, known to the lane that published it (the decision opened as it was
    # sealed to the clearance system); None when read back from gun.decisions, which the
    # hub cannot open (sealed to the clearance system).
    outcome: Outcome | None = None


class Origin(NamedTuple):
    """Where a published decision came from: the declaration partition whose case
    decided it (its outbox record's ``gun.decision.origin``), and its outcome; each None
    when not known."""

    partition: int | None
    outcome: Outcome | None


class PublishedMemory:
    """The decisions last published on one partition, by reference: each remembered
    reference's published versions and the highest of them. The lane's count keeps the
    last ``capacity`` decisions; the reference published least recently is forgotten
    first, all its versions at once: a version of a remembered reference is published
    exactly when it is in the memory, so a lower version announced again after a crash
    (it was published before the higher one) is a duplicate, never taken for a version
    decided too late (review stop 38-g, G1: a memory of pairs forgot a reference's
    version 1 while it still knew its version 2 as the highest). Each origin's window
    (:class:`Published` ``origin``) keeps its own latest decisions besides (module
    docstring); a reference is remembered while either holds one of its decisions.

    It keeps with each reference the declarant of its first decision published that
    names one (``declarant_tag``), forgotten with the reference: a decision naming
    another is not published (review stop 38-s, S3). A decision naming none (of a
    declaration refused unread) is judged by its version only, and so is every decision
    of a reference whose published decisions named none."""

    def __init__(self, capacity: int, *, per_origin: int | None = None) -> None:
        self._capacity = capacity
        # Each reference's published versions, in the order published, with where each
        # came from and its outcome (:class:`Origin`), the reference published last at
        # the end.
        self._versions: OrderedDict[bytes, dict[bytes, Origin]] = OrderedDict()
        self._highest: dict[bytes, int] = {}  # of the references the count remembers
        self._declarants: dict[bytes, bytes] = {}  # of the remembered references that name one
        self._count = 0  # decisions the count remembers, all references together
        self._per_origin = per_origin_share(capacity) if per_origin is None else per_origin
        self._windows: dict[int, deque[Published]] = {}
        self._in_all_windows = 0  # their decisions, all origins together
        # The references the windows hold: how many window entries each, and every
        # version of it the windows saw while they held it. A reference is held whole, as
        # by the count: a version one window let go while another still holds a higher
        # one would be judged superseded when announced again (review stop 38-g, G1).
        self._window_entries: Counter[bytes] = Counter()
        self._in_windows: dict[bytes, dict[bytes, Origin]] = {}

    def add(self, identity: Identity, declarant: bytes = b"") -> None:
        """``identity`` published, decided for ``declarant`` (empty: it names none)."""
        self.remember(Published(identity, declarant))

    def remember(self, decision: Published) -> None:
        """``decision`` published: counted by the lane, and kept in its origin's window
        when it names one."""
        reference, version = decision.identity
        if decision.declarant:
            self._declarants.setdefault(reference, decision.declarant)
        versions = self._versions.setdefault(reference, {})
        self._versions.move_to_end(reference)
        if version not in versions:
            versions[version] = Origin(decision.origin, decision.outcome)
            self._count += 1
        number = version_number(version)
        if number is not None:
            self._highest[reference] = max(number, self._highest.get(reference, number))
        if decision.origin is not None:
            self._into_window(decision.origin, decision)
        while self._count > self._capacity and len(self._versions) > 1:
            oldest, forgotten = self._versions.popitem(last=False)
            self._highest.pop(oldest, None)
            self._count -= len(forgotten)
            self._forget_if_unheld(oldest)
        if self._count > self._capacity:
            # One reference with more versions than the capacity (never in practice:
            # 20,000 amendments): its earliest published go, its highest is kept.
            for version in list(versions)[: self._count - self._capacity]:
                del versions[version]
            self._count = self._capacity

    def _into_window(self, origin: int, decision: Published) -> None:
        window = self._windows.setdefault(origin, deque())
        window.append(decision)
        self._in_all_windows += 1
        reference, version = decision.identity
        self._window_entries[reference] += 1
        versions = self._in_windows.setdefault(reference, {})
        versions.setdefault(version, Origin(origin, decision.outcome))
        if len(versions) > self._per_origin:  # a reference amended for ever: its earliest go
            del versions[next(iter(versions))]
        while len(window) > self._per_origin:
            self._let_go(window)
        # All windows together hold no more than the count: the largest gives way (the
        # busy partitions', a stuck one's only once it is the largest), so the memory is
        # twice the count at most whatever the partitions feeding the lane (review of stop
        # 47: a window each of a quarter of the count grew with the partitions).
        while self._in_all_windows > self._capacity:
            self._let_go(max(self._windows.values(), key=len))

    def _let_go(self, window: deque[Published]) -> None:
        """The oldest decision of ``window`` leaves it (its reference with the last)."""
        gone = window.popleft()
        self._in_all_windows -= 1
        reference = gone.identity[0]
        self._window_entries[reference] -= 1
        if self._window_entries[reference] <= 0:
            del self._window_entries[reference]
            del self._in_windows[reference]
            self._forget_if_unheld(reference)

    def _forget_if_unheld(self, reference: bytes) -> None:
        if reference not in self._versions and reference not in self._in_windows:
            self._declarants.pop(reference, None)

    def refusal(self, identity: Identity, declarant: bytes = b"") -> Refusal | None:
        """Why the decision ``identity``, decided for ``declarant``, must not be
        published; None: it may be. Another declarant than the reference's first one
        published is refused first, whatever its version (a security matter, not a
        repeat). A version published is a duplicate even below a higher one published
        since; only a version never published below one published is superseded."""
        reference, version = identity
        owner = self._declarants.get(reference)
        if declarant and owner is not None and declarant != owner:
            return OTHER_DECLARANT
        if identity in self:
            return DUPLICATE
        number = version_number(version)
        highest = self.highest(reference)
        if number is None or highest is None:
            return None
        if number < highest:
            return SUPERSEDED
        return DUPLICATE if number == highest else None

    def highest(self, reference: bytes) -> int | None:
        numbers = [
            n for v in self._in_windows.get(reference, ()) if (n := version_number(v)) is not None
        ]
        counted = self._highest.get(reference)
        if counted is not None:
            numbers.append(counted)
        return max(numbers, default=None)

    def origin(self, identity: Identity) -> Origin:
        """Where the published decision ``identity`` came from and its outcome, as far as
        known (each None when not). The lane tells a case on another partition that
        decided the same version that its decision was not published, and which outcome
        was (runtime/publisher.py)."""
        reference, version = identity
        partition, outcome = None, None
        for held in (self._versions.get(reference, {}), self._in_windows.get(reference, {})):
            known = held.get(version)
            if known is not None:
                partition = known.partition if partition is None else partition
                outcome = known.outcome if outcome is None else outcome
        return Origin(partition, outcome)

    def declarant(self, reference: bytes) -> bytes:
        """The declarant of ``reference``'s decisions published; empty: none known."""
        return self._declarants.get(reference, b"")

    def identities(self) -> list[Identity]:
        """What the lane's count remembers, in the order published."""
        return [(r, v) for r, versions in self._versions.items() for v in versions]

    def windows(self) -> dict[int, tuple[int, int]]:
        """Where each origin's window lies on the decisions partition: the offsets of
        its first and last decision (windows of decisions whose offset is unknown left
        out)."""
        return {
            origin: (window[0].offset, window[-1].offset)
            for origin, window in self._windows.items()
            if window and window[0].offset >= 0 and window[-1].offset >= 0
        }

    def windows_with(self, decisions: Iterable[Published]) -> dict[int, tuple[int, int]]:
        """:meth:`windows` as they will be once ``decisions`` are remembered (a
        transaction's, before it commits), the memory unchanged: each window's first
        offset as it is now (what the new ones would push out is read back all the
        same: more than needed, never less)."""
        windows = self.windows()
        for decision in decisions:
            if decision.origin is None or decision.offset < 0:
                continue
            first, last = windows.get(decision.origin, (decision.offset, decision.offset))
            windows[decision.origin] = (min(first, decision.offset), max(last, decision.offset))
        return windows

    def __contains__(self, identity: object) -> bool:
        if not isinstance(identity, tuple) or len(identity) != 2:
            return False
        reference, version = identity
        return version in self._versions.get(reference, ()) or version in self._in_windows.get(
            reference, ()
        )

    def __len__(self) -> int:
        """The decisions remembered: the lane's count and the windows' beyond it."""
        beyond = sum(
            1
            for reference, held in self._in_windows.items()
            for version in held
            if version not in self._versions.get(reference, ())
        )
        return self._count + beyond


# The broker refuses a commit whose metadata is longer than its offset.metadata.max.bytes
# (4,096 by default): the windows said beyond this are left out, the latest first (they
# are the likeliest to lie in the latest offsets, read back anyway).
MOST_METADATA_CHARS = 3_500
_METADATA_PREFIX = "windows/1 "


def window_metadata(windows: Mapping[int, tuple[int, int]]) -> str:
    """The commit metadata saying where each origin's window lies: ``windows/1`` then
    ``origin:first-last`` per origin, the oldest windows first."""
    said = _METADATA_PREFIX
    for origin, (first, last) in sorted(windows.items(), key=lambda item: item[1][1]):
        entry = f"{origin}:{first}-{last} "
        if len(said) + len(entry) > MOST_METADATA_CHARS:
            log.warning(
                "publisher: %d origins' windows are too many to name in a commit; the "
                "latest are left out (read back from the lane's latest offsets only)",
                len(windows),
            )
            break
        said += entry
    return said.rstrip()


def windows_in(metadata: str) -> dict[int, tuple[int, int]]:
    """The windows a commit's metadata names; none when it names none or is not ours
    (a commit made before the windows were said, or by hand)."""
    if not metadata.startswith(_METADATA_PREFIX):
        return {}
    windows: dict[int, tuple[int, int]] = {}
    for entry in metadata[len(_METADATA_PREFIX) :].split():
        origin, _, span = entry.partition(":")
        first, _, last = span.partition("-")
        # ASCII digits: "²" is a digit to str.isdigit, and int refuses it (the metadata
        # is anyone's in the group; review of stop 55).
        numbers = (origin, first, last)
        if all(n.isascii() and n.isdigit() for n in numbers) and int(first) <= int(last):
            windows[int(origin)] = (int(first), int(last))
    return windows


def spans_of_windows_before(
    windows: Mapping[int, tuple[int, int]], earliest: int, *, beginning: int, most: int
) -> list[tuple[int, int]]:
    """The offset spans (start, end) a lane taken over reads besides its latest offsets
    (read from ``earliest`` on): each origin window's part before ``earliest``, at most
    ``most`` offsets of it (its latest: a window that long is a partition deciding a
    burst while the others were quiet), spans that overlap merged, none before the log's
    ``beginning`` (retention took it)."""
    wanted = sorted(
        (max(first, last + 1 - most, beginning), min(last + 1, earliest))
        for first, last in windows.values()
    )
    merged: list[tuple[int, int]] = []
    for start, end in wanted:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
