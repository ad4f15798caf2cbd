"""Whose references a trader may lodge through the single window's gateway.

A reference is the key of everything (contract section 3), and the first version read
names the case's declarant: a later version naming another is refused. Customs
references are sequential, so a trader lodging first, in its own name, the reference
another trader's clearance system was about to use took it: the genuine declaration was
then ignored as a stale version and the decision the clearance system got for that
reference was on the trader's content (found by review in stop 35). Two traders choosing
the same local reference would collide the same way without malice.

So a trader lodges only references of its own: its EORI, then a separator (-, . or _).
An EORI begins with two letters (its country) and an MRN with two digits (its year), so
no customs reference is in a trader's namespace, and no trader's is in another's (the
separator ends the EORI). The clearance system, which assigns MRNs and relays its
traders' LRNs, lodges any reference.
"""

from __future__ import annotations

# Not "/", which the reference type allows too: a reference is a path segment of the
# status lookup (/declarations/{reference}).
SEPARATORS = "-._"


def is_declarants_reference(reference: str, eori: str) -> bool:
    """``reference`` is the EORI ``eori`` followed by a separator and more."""
    return (
        len(reference) > len(eori) + 1
        and reference.startswith(eori)
        and reference[len(eori)] in SEPARATORS
    )


def the_declarants_references(eori: str) -> str:
    """How to say which references ``eori`` may lodge, in a refusal."""
    return (
        f"a reference of the declarant's own: {eori}- (or {eori}. or {eori}_) then its own number"
    )
