"""The demo's sample declarations: what they cover, and how one run sends them.

Versions of one declaration (same ``<Reference>`` in the files) get one fresh reference
and leave one after the other: a later version only once the one before it is decided.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.model.declaration import Direction, Stage
from gun_hub.domain.routing import RoutingTable, route_documents
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_hub.xml.safe_parse import XmlRejected
from gun_tools.demo.samples import SampleRun, SamplesError, load_samples

STEM = "26FRDEMO123456"


@pytest.fixture
def run(samples: Path) -> SampleRun:
    return load_samples(samples / "declarations", STEM)


def test_each_declaration_gets_a_fresh_reference_shared_by_its_versions(run: SampleRun) -> None:
    sent = run.declarations
    assert len({s.reference for s in sent}) == len(run.chains)
    assert all(s.reference.startswith(STEM) and len(s.reference) == 18 for s in sent)
    for sample in sent:
        assert f"<Reference>{sample.reference}</Reference>".encode() in sample.xml
        assert b"26FR000690" not in sample.xml  # the file's own reference is gone


def test_only_first_versions_leave_at_once_and_each_later_one_follows_its_predecessor(
    run: SampleRun,
) -> None:
    first = run.first_versions()
    assert {s.version for s in first} == {1}
    later = [s for s in run.declarations if s not in first]
    assert [(s.name, s.version) for s in later] == [
        ("13b-release-fillets-amended.xml", 2),
        ("14b-cancelled-live-parrots.xml", 2),
    ]
    for sample in later:
        [before] = [s for s in first if s.reference == sample.reference]
        assert run.next_after(*before.key) == sample
        assert run.next_after(*sample.key) is None


def test_samples_cover_each_authority_two_at_once_war_material_an_amendment_a_cancellation(
    run: SampleRun, routing_table: RoutingTable
) -> None:
    codec = DeclarationCodec()
    authorities_quoted: list[tuple[str, ...]] = []
    stages_of_later_versions = set()
    war_material_exports = []
    for sample in run.declarations:
        try:
            declaration = codec.decode(sample.xml)
        except XmlRejected:
            continue  # the malformed sample, refused at intake on purpose
        routed = route_documents(declaration, routing_table).authorities
        authorities_quoted.append(routed)
        if declaration.version > 1:
            stages_of_later_versions.add(declaration.stage)
        if declaration.direction is Direction.EXPORT and "dga" in routed:
            war_material_exports.append(sample.name)
    assert {a for quoted in authorities_quoted for a in quoted} == {"dgal", "cites", "dga"}
    assert ("cites", "dgal") in authorities_quoted
    assert stages_of_later_versions == {Stage.LODGED, Stage.CANCELLED}
    assert "11-control-war-material-export.xml" in war_material_exports


def test_two_files_with_the_same_reference_and_version_are_refused(
    samples: Path, tmp_path: Path
) -> None:
    salmon = (samples / "declarations" / "01-release-salmon.xml").read_bytes()
    (tmp_path / "a.xml").write_bytes(salmon)
    (tmp_path / "b.xml").write_bytes(salmon)
    with pytest.raises(SamplesError, match=r"a\.xml, b\.xml: two files with the same"):
        load_samples(tmp_path, STEM)
