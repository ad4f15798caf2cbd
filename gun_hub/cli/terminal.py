"""Text others wrote, printed for an operator as text, never as commands to the terminal.

What the CLI prints of the hub's answers is partly others' words: a dead letter's value
(a foreign producer's bytes), its headers, a record key, a declaration's texts in a
status lookup, the reason of a refusal. Written raw, a control sequence among them clears
the screen, rewrites the lines above, retitles the window, or writes the clipboard where
a terminal honours OSC 52 (review stop 39-O, O2). So every control character (C0, DEL,
C1), every bidirectional override, the line and paragraph separators and every character
that prints nothing (zero-width ones) are shown escaped, as Python writes them
(``\\x1b``, ``\\u202e``, ``\\u200b``): what it was stays readable, nothing acts, and no
cell passes for another. The raw bytes only go to a file
an operator names (``gun-hub dlq show --payload --out FILE``).
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 but newline, tab and a CR ending a line (a bare CR rewrites the line), DEL, C1 (0x9b
# is an 8-bit CSI), the characters that reorder a line's display (bidi embeddings,
# overrides, isolates, marks), the line and paragraph separators (a line break to some
# terminals and viewers), and the characters that print nothing (zero-width spaces and
# joiners, invisible operators, the byte order mark): "o\u200bk" must not pass for "ok".
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_INVISIBLE = "\u180e\u200b-\u200d\u2028\u2029\u2060-\u2064\ufeff"
_CONTROL_BUT_LINES = re.compile(
    f"\r(?!\n)|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}{_INVISIBLE}]"
)
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}{_INVISIBLE}]")
_JSON_LEAVES_RAW = re.compile(f"[\x7f-\x9f{_BIDI}{_INVISIBLE}]")  # it escapes C0 itself
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, *, multiline: bool = False) -> str:
    """``text`` (as ``str()``) with its control characters escaped; ``multiline`` keeps
    newlines and tabs (a payload's lines), otherwise they are escaped too (one field, one
    cell of a table: a newline would print a line of its own)."""
    return (_CONTROL_BUT_LINES if multiline else _CONTROL).sub(_escaped, str(text))


def as_json(body: Any) -> str:
    """``body`` as indented JSON for a terminal: JSON escapes C0 characters itself, and
    the others (C1, DEL, bidi, separators, zero-width) are escaped as ``\\uXXXX`` here:
    still the same JSON."""
    text = json.dumps(body, indent=2, ensure_ascii=False)
    return _JSON_LEAVES_RAW.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
