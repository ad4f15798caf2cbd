"""The table writes of a handling that fails are undone with its outbox.

A handler writes its tables as it goes (the ``cases``, ``open-cases`` and
``case-retention`` tables; faust sends each write to the changelog at once) and builds
its outbox beside them. When it raises, the worker dead-letters the record, discards the
outbox and undoes what it changed in memory (``HubContext.undo``: the audit links, the
decisions announced), and commits past the record (runtime/app.py ``_handled``). Its
table writes stayed: whatever prefix of them the handler had made before the failure
(review stop 40, open item 2). Some prefixes decided wrongly:

* a new version's handling removes the deadline of the undecided version it supersedes
  (``Intake._supersede``) before it opens the new case: failing in between, it left the
  earlier version undecided with no deadline, never ticked, never decided (a silent
  partner: stuck for ever), and the refusal SUPERSEDED it had built discarded;
* the decision of a case (``HubContext.decide_case``) removes its deadline, or replaces it
  by a control's report date a week away, before the decision is announced and the case
  stored: failing in between, the case stayed undecided with no deadline (stuck for ever)
  or was decided at its deadline a week late;
* a new version's deadline is written before its case and its requests: failing in
  between, the entry named a version the case was not.

``WriteJournal`` keeps, from ``mark`` (before each handling) until ``kept`` (it
completed) or ``undo`` (it failed), each written key's value as it was before the
handling's first write to it, and ``undo`` writes those values back (removes the keys
that had none), last written first, through the same store (the same partition's
changelog: the handler is still in its event), and only where they changed. Handlers run
without yielding, so the journal holds that handling's writes and nothing else. The store
refusing a write back (a partition being given up: its next owner reads the record
again) is logged; the others are still written back.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Store(Protocol):
    """A table as the pipeline writes it (faust's, or a dict in unit tests)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def pop(self, key: bytes, default: bytes | None, /) -> bytes | None: ...


class WriteJournal:
    """The values a handling wrote over, to be written back if it fails."""

    def __init__(self) -> None:
        # (store, key) -> (store, key, value before the handling's first write): in the
        # order first written.
        self._before: dict[tuple[int, bytes], tuple[Store, bytes, bytes | None]] = {}
        self._recording = False

    def journaled(self, store: Store) -> JournaledStore:
        """``store``, its writes recorded in this journal while a handling runs."""
        return JournaledStore(store, self)

    def mark(self) -> None:
        """A handling starts: its writes are recorded from now."""
        self._before.clear()
        self._recording = True

    def kept(self) -> None:
        """The handling completed: its writes stand; nothing recorded until the next."""
        self._before.clear()
        self._recording = False

    def undo(self) -> None:
        """The handling failed: every key it wrote holds its value from before again."""
        before, self._before = self._before, {}
        self._recording = False  # the writes back, and what follows, are no handling's
        for store, key, value in reversed(before.values()):
            try:
                if store.get(key) == value:
                    continue  # unchanged (written back to what it was): nothing to send
                if value is None:
                    store.pop(key, None)
                else:
                    store[key] = value
            except Exception:
                log.exception(
                    "a write of a failed handling not undone (key %r)",
                    key.decode("utf-8", "replace"),
                )

    def before_writing(self, store: Store, key: bytes) -> None:
        """``store`` is about to write ``key``: its value is kept, the first time."""
        if not self._recording:
            return
        where = (id(store), key)
        if where not in self._before:
            self._before[where] = (store, key, store.get(key))


class JournaledStore:
    """A store whose writes a ``WriteJournal`` can undo."""

    def __init__(self, store: Store, journal: WriteJournal) -> None:
        self._store = store
        self._journal = journal

    def get(self, key: bytes) -> bytes | None:
        return self._store.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._journal.before_writing(self._store, key)
        self._store[key] = value

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:
        self._journal.before_writing(self._store, key)
        return self._store.pop(key, default)
