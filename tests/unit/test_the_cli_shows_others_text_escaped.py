"""What others wrote reaches an operator's terminal as text, never as commands to the
terminal (review stop 39-O, O2).

A dead letter's value is a foreign producer's bytes, its headers what a component (or a
producer on gun.dlq) wrote; a status lookup shows texts a declaration carried. Written
raw, an escape sequence among them clears the screen, rewrites the lines above (the kind
and reason the officer is about to act on), retitles the window or, where OSC 52 is
honoured, writes the clipboard. Every control character but a payload's newlines and
tabs is shown escaped (``\\x1b``), as are the bidirectional overrides that reorder a line;
the raw bytes only go to a file named with ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import gun_hub.cli.ops as ops
from gun_hub.cli import app
from gun_hub.cli.terminal import as_json, shown
from tests.unit.test_dead_letter_desk import Desk, desk
from tests.unit.test_dlq_command import dlq

__all__ = ["desk"]  # the fixture, used below

# Clear the screen, home the cursor, a line that pretends, OSC 52 (write the clipboard,
# ended by BEL), an 8-bit CSI, a right-to-left override.
HOSTILE = "\x1b[2J\x1b[HSCREEN-CLEARED \x1b]52;c;ZWNobyBwd25lZA==\x07 \x9b31m \u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def assert_no_raw_control(text: str) -> None:
    assert not [c for c in RAW if c in text], repr(text)


def test_control_characters_are_shown_escaped_and_text_kept() -> None:
    assert shown(HOSTILE) == (
        "\\x1b[2J\\x1b[HSCREEN-CLEARED \\x1b]52;c;ZWNobyBwd25lZA==\\x07 \\x9b31m \\u202eevil"
    )
    assert shown("a\rb\x00c\x7f") == "a\\rb\\x00c\\x7f"
    assert shown("Déclaration 中 ok") == "Déclaration 中 ok"
    # one line of a table or a field: a newline would start a line of its own
    assert shown("two\nlines\tand a tab") == "two\\nlines\\tand a tab"
    assert shown("two\nlines\tand a tab", multiline=True) == "two\nlines\tand a tab"
    assert shown("crlf\r\nbare\rcr", multiline=True) == "crlf\r\nbare\\rcr"


# Line and paragraph separators (a line break to some terminals and viewers) and the
# characters that print nothing: a cell that looks like another ("ok" and "o\u200bk"),
# a line that ends where it does not (review stop 39-S, a note).
INVISIBLE = "\u2028\u2029\u200b\u200c\u200d\u2060\u2063\ufeff\u180e"


def test_separators_and_characters_that_print_nothing_are_shown_escaped() -> None:
    for char in INVISIBLE:
        assert shown(f"o{char}k") == f"o\\u{ord(char):04x}k"
        assert shown(f"o{char}k", multiline=True) == f"o\\u{ord(char):04x}k"
        printed = as_json({"reason": f"o{char}k"})
        assert char not in printed
        assert json.loads(printed) == {"reason": f"o{char}k"}


def test_json_output_escapes_what_json_leaves_raw() -> None:
    """json.dumps escapes C0 characters; C1 (an 8-bit CSI) and bidi overrides it keeps."""
    printed = as_json({"reason": HOSTILE, "café": "中"})
    assert_no_raw_control(printed)
    assert json.loads(printed) == {"reason": HOSTILE, "café": "中"}
    assert "中" in printed


async def test_dlq_show_payload_writes_a_hostile_value_escaped(desk: Desk, tmp_path: Path) -> None:
    desk.dead_letter(0, HOSTILE.encode() + b"\nsecond line\n", kind="DECLARATION_NOT_SEALED")
    result = await dlq(desk, tmp_path, "alice", "show", "1:0", "--payload")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert "\\x1b[2J\\x1b[HSCREEN-CLEARED" in result.stdout
    assert "\nsecond line\n" in result.stdout  # its lines stay lines


async def test_dlq_show_payload_out_writes_the_bytes_as_they_are(
    desk: Desk, tmp_path: Path
) -> None:
    value = HOSTILE.encode()
    desk.dead_letter(0, value, kind="DECLARATION_NOT_SEALED")
    out = tmp_path / "payload.bin"
    result = await dlq(desk, tmp_path, "alice", "show", "1:0", "--payload", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == value
    assert_no_raw_control(result.output)


async def test_dlq_list_and_show_escape_hostile_headers(desk: Desk, tmp_path: Path) -> None:
    """A producer on gun.dlq writes any header: kind, component, reason."""
    desk.dead_letter(0, b"x", kind=f"K{HOSTILE}", component=f"C{HOSTILE}")
    listed = await dlq(desk, tmp_path, "bob", "list")
    assert listed.exit_code == 0, listed.output
    assert_no_raw_control(listed.stdout)
    assert "K\\x1b[2J" in listed.stdout
    show = await dlq(desk, tmp_path, "bob", "show", "1:0")
    assert show.exit_code == 0, show.output
    assert_no_raw_control(show.stdout)
    assert "C\\x1b[2J" in show.stdout
    as_json_too = await dlq(desk, tmp_path, "bob", "show", "1:0", "--json")
    assert_no_raw_control(as_json_too.stdout)


STATUS: dict[str, Any] = {
    "reference": "26FR000690I0000012",
    "version": 1,
    "state": "DECIDED",
    "outcome": "REFUSE",
    "reasons": [{"code": "XML_SCHEMA", "csw": None, "en": f"bad {HOSTILE}", "fr": HOSTILE}],
    "history": [
        {
            "at": "2026-11-22T10:00:00Z",
            "version": 1,
            "kind": "RECEIVED",
            "authority": None,
            "detail": f"lodged by {HOSTILE}",
        }
    ],
}


def cli_answered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int, body: Any, *args: str
) -> Result:
    monkeypatch.setattr(ops, "call_hub", lambda *_, **__: (code, body))
    credentials = tmp_path / "alice.credentials"
    credentials.write_text("alice:a-long-enough-password\n")
    credentials.chmod(0o600)
    return CliRunner().invoke(
        app, [*args, "--credentials-file", str(credentials), "--hub-url", "http://h"]
    )


def test_a_status_lookup_escapes_what_the_declaration_carried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = cli_answered(monkeypatch, tmp_path, 200, STATUS, "status", STATUS["reference"])
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    assert "lodged by \\x1b[2J" in result.stdout
    as_json_too = cli_answered(
        monkeypatch, tmp_path, 200, STATUS, "status", STATUS["reference"], "--json"
    )
    assert_no_raw_control(as_json_too.stdout)


def test_statistics_and_refusals_escape_the_hubs_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stats = {
        "from": "2026-11-01",
        "to": "2026-12-01",
        "decisions": {
            "total": 1,
            "by_outcome": {"RELEASE": 1},
            "by_day": {"2026-11-02": {"RELEASE": 1}},
            "by_authority": {"dgal": {"RELEASE": 1}},
            "by_document_code": {},
        },
        "overrides": None,
        "dead_letters": {"total": 1, "by_kind": {f"K{HOSTILE}": 1}},
    }
    result = cli_answered(monkeypatch, tmp_path, 200, stats, "stats")
    assert result.exit_code == 0, result.output
    assert_no_raw_control(result.stdout)
    refused = cli_answered(monkeypatch, tmp_path, 400, {"error": HOSTILE}, "status", "REF1234")
    assert refused.exit_code == 2
    assert_no_raw_control(refused.stderr)
    assert "\\x1b[2J" in refused.stderr
