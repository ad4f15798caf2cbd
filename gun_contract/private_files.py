"""Files only their owner may read: the one check and the one way to make them.

A secret a process reads (a party's private keys, the portal's signing key, the web
listeners' TLS key, the officers' scrypt hashes, an officer's credentials) is refused when
its group or others have any right on it, naming the file and the mode to set: it has
been exposed already, and using it as it is would hide that. A store the process writes
(every SQLite file: the operations view holds declarants' EORIs and histories) is made
readable by its owner only, whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO


def refuse_if_shared(path: Path, error: Callable[[str], Exception]) -> None:
    """Raise ``error(message)`` if anyone but ``path``'s owner may read, write or run it.

    An ``OSError`` of ``stat`` (a missing file) is the caller's to word.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & SHARED_BITS:
        raise error(f"{path} is readable by others (mode {mode:o}); chmod 600 it")


def make_private_folder(folder: Path) -> None:
    """``folder`` made 0700 if missing (missing parents as the umask has them). A folder
    that exists is left as it is: it may be a volume, or ``/tmp``, that others use too."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def make_own_folder_private(folder: Path) -> None:
    """``folder``, which only this program writes in (a broker's data and logs), made
    0700, and narrowed to it if it exists and is ours (made before this rule held)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = folder.stat()
    if found.st_uid == os.getuid() and stat.S_IMODE(found.st_mode) & SHARED_BITS:
        folder.chmod(0o700)


def make_private_file(path: Path, *beside: str) -> None:
    """``path`` made empty with mode 0600 if missing; if it exists and is ours, it and the
    files named ``path`` + each of ``beside`` that exist are narrowed to 0600 (a file
    made before this rule held)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for each in (path, *(path.with_name(path.name + suffix) for suffix in beside)):
        try:
            found = each.stat()
        except FileNotFoundError:
            continue
        if found.st_uid == os.getuid() and stat.S_IMODE(found.st_mode) & SHARED_BITS:
            each.chmod(stat.S_IMODE(found.st_mode) & ~SHARED_BITS)
