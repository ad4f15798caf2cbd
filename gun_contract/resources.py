"""Where the repository's data files (schemas, routing table) live.

In a checkout (editable install) they sit beside the packages; in a wheel they are copied
under ``gun_contract/_resources`` (see ``pyproject.toml``). Code asks here, never builds
paths. (The local broker's launcher is development tooling: ``gun_tools.local_broker``.)
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_DIR = _PACKAGE_DIR.parent


@cache
def _resource_root(name: str) -> Path:
    for candidate in (_CHECKOUT_DIR / name, _PACKAGE_DIR / "_resources" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} is missing from this installation")


def schema_path(filename: str) -> Path:
    """Path of an XSD (or AsyncAPI document) shipped in ``schemas/``."""
    return _resource_root("schemas") / filename


def config_path(filename: str) -> Path:
    """Path of a shipped configuration file (``config/``), such as the routing table."""
    return _resource_root("config") / filename
