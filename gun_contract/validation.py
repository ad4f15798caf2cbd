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


def unhandled_reason(error: BaseException) -> str:
    """``error`` as ``ValueError raised at gun_hub.pipeline.correlation:212 in handle``:
    its type and where it was raised, never its text. An error nobody foresaw says
    whatever its author put in it, often the value at hand (a licence number); a dead
    letter's reason is a clear header every officer reads, so the text goes to the
    worker's log only (found by review in stop 30)."""
    return f"{fault_without_text(error)} (its text is in the worker's log)"


def fault_without_text(error: BaseException) -> str:
    """``error`` as ``ValueError raised at adapters.base.certex:468 in _map_answer``: the
    kind of fault and the innermost place it was raised, for a log line about input from
    another party, whose text the exception may quote (a partner's answer echoing a
    licence: review stop 39, C2). No traceback either: it carries the same text."""
    where = ""
    trace = error.__traceback__
    while trace is not None and trace.tb_next is not None:
        trace = trace.tb_next
    if trace is not None:
        frame = trace.tb_frame
        module = frame.f_globals.get("__name__", "?")
        where = f" raised at {module}:{trace.tb_lineno} in {frame.f_code.co_name}"
    return f"{type(error).__name__}{where}"
