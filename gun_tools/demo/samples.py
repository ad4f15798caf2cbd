"""The demo's sample declarations (``samples/declarations``), as one run submits them.

Files that carry the same ``<Reference>`` are versions of one declaration (an amendment, a
cancellation): the run gives each declaration a fresh reference, shared by its versions,
and submits a version only once the one before it is decided, as a clearance system does.
Submitted together, the hub would take the later version before deciding the earlier one,
which would be refused as superseded (reason SUPERSEDED) instead of decided on its
documents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from gun_hub.xml.declaration_codec import sniff_identity

_FIRST_REFERENCE = re.compile(rb"<Reference>[^<]*</Reference>")


class SamplesError(ValueError):
    """The sample folder cannot be run; the message names the file at fault."""


def samples_dir() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "samples"


def with_reference(declaration: bytes, reference: str) -> bytes:
    """The same declaration under another reference (its first ``<Reference>``)."""
    return _FIRST_REFERENCE.sub(
        b"<Reference>" + reference.encode() + b"</Reference>", declaration, count=1
    )


@dataclass(frozen=True, slots=True)
class SampleDeclaration:
    """One sample file as this run submits it."""

    name: str  # the file's name
    reference: str  # this run's reference for it
    version: int
    xml: bytes  # the file's bytes under ``reference``

    @property
    def key(self) -> tuple[str, int]:
        """What its decision is known by: reference and version."""
        return self.reference, self.version


@dataclass(frozen=True, slots=True)
class SampleRun:
    """Every sample of a run, each declaration's versions in the order they are sent."""

    chains: tuple[tuple[SampleDeclaration, ...], ...]

    @property
    def declarations(self) -> list[SampleDeclaration]:
        """Every sample, in file order within each declaration."""
        return [sample for chain in self.chains for sample in chain]

    def first_versions(self) -> list[SampleDeclaration]:
        return [chain[0] for chain in self.chains]

    def next_after(self, reference: str, version: int) -> SampleDeclaration | None:
        """The version to send once ``version`` of ``reference`` is decided, if any."""
        for chain in self.chains:
            for sent, following in pairwise(chain):
                if sent.key == (reference, version):
                    return following
        return None

    def named(self, key: tuple[str, int]) -> str:
        """The sample file a (reference, version) came from ("" for none of ours)."""
        return next((s.name for s in self.declarations if s.key == key), "")


def load_samples(folder: Path, reference_stem: str) -> SampleRun:
    """Read ``folder/*.xml``; declaration number ``n`` (in file order) gets the reference
    ``reference_stem`` followed by ``n`` on four digits."""
    versions: dict[str, list[tuple[int, str, bytes]]] = {}
    for path in sorted(folder.glob("*.xml")):
        data = path.read_bytes()
        identity = sniff_identity(data)
        if identity is None or identity.version < 1:
            raise SamplesError(f"{path.name}: no <Reference> and <Version> to run it under")
        versions.setdefault(identity.reference, []).append((identity.version, path.name, data))
    chains = []
    for number, found in enumerate(versions.values(), start=1):
        reference = f"{reference_stem}{number:04d}"
        found.sort()
        numbers = [version for version, _, _ in found]
        if len(set(numbers)) != len(numbers):
            names = ", ".join(name for _, name, _ in found)
            raise SamplesError(f"{names}: two files with the same reference and version")
        chains.append(
            tuple(
                SampleDeclaration(name, reference, version, with_reference(data, reference))
                for version, name, data in found
            )
        )
    return SampleRun(tuple(chains))
