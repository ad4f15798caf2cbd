"""What a message that does not validate is told, without what it holds.

pydantic's own error text quotes the input (``input_value='LEMG.FR...'``), and the reason
of a dead letter travels in a clear header of ``gun.dlq``, read by every officer in the
dead-letter desk, while the message itself stays sealed in the dead letter (a DGA licence
number is for operators only, docs/security.md). The reason names each invalid field and
how it is invalid (pydantic's error type), never its value.
"""

from __future__ import annotations

from pydantic import ValidationError

_MOST_PROBLEMS = 5


def invalid_fields(err: ValidationError) -> str:
    """``err`` as ``items.0.documents.0.code: missing; ...``, at most five fields."""
    problems = [
        f"{'.'.join(str(step) for step in problem['loc']) or '(message)'}: {problem['type']}"
        for problem in err.errors()
    ]
    more = len(problems) - _MOST_PROBLEMS
    text = "; ".join(problems[:_MOST_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
    return f"{err.title} is invalid: {text}"
