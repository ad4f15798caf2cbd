"""Every hostile or malformed declaration is refused with its own precise reason."""

from __future__ import annotations

import pytest

from gun_hub.xml.declaration_codec import DeclarationCodec, sniff_identity
from gun_hub.xml.safe_parse import XmlLimits, XmlRejected
from tests.builders import declaration, declaration_xml
from tests.hostile_corpus import HostileCase, hostile_cases

CASES = hostile_cases()
# The corpus's oversized case is 600 kB; the test parser's cap is below it.
LIMITS = XmlLimits(max_bytes=512 * 1024)


@pytest.fixture(scope="module")
def codec() -> DeclarationCodec:
    return DeclarationCodec(LIMITS)


def test_the_corpus_has_at_least_thirty_distinct_cases() -> None:
    assert len(CASES) >= 30
    assert len({case.name for case in CASES}) == len(CASES)
    assert len({case.data for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_declaration_is_refused_with_its_reason(
    codec: DeclarationCodec, case: HostileCase
) -> None:
    with pytest.raises(XmlRejected) as refused:
        codec.decode(case.data)
    assert refused.value.kind is case.kind
    assert case.reason in refused.value.message
    if case.path is not None:
        assert refused.value.path == case.path
    if case.hidden is not None:
        assert case.hidden not in str(refused.value)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_reference_is_read_when_it_can_be(case: HostileCase) -> None:
    identity = sniff_identity(case.data)
    assert (identity is not None) is case.identifiable


def test_refusing_hostile_input_leaves_the_parser_usable(codec: DeclarationCodec) -> None:
    for case in CASES:
        with pytest.raises(XmlRejected):
            codec.decode(case.data)
    assert codec.decode(declaration_xml()) == declaration()
