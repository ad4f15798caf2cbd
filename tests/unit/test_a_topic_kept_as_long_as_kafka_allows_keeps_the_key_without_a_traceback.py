"""A topic whose ``retention.ms`` is the largest Kafka takes (``Long.MAX_VALUE``, how many
operators write "keep it for ever" besides -1) keeps a retired encryption key, said as
``keys prune`` says it of a topic kept for ever; the prune neither stops on a traceback
nor leaves the other keys unjudged.

``needed_after_retirement`` makes ``2 * timedelta(milliseconds=retention_ms)`` of the
broker's answer: 9223372036854775807 ms is some 106 billion days, past ``timedelta``'s
999,999,999, and the ``OverflowError`` left ``gun-hub keys prune`` (cron) with a
traceback before it judged any key (a span of a few thousand years overflows one step
later, in ``prune_decision``'s ``retired + keep_for``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_contract.security.entitlements import Entitlements
from gun_contract.topics import topic_registry
from gun_hub.cli import app
from gun_hub.security.key_retention import needed_after_retirement
from tests.keystore_fixtures import (
    BrokerRetentions,
    private_kids,
    retired_after_a_rotation,
)

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS = TOPICS.requests("dgal")
LONG_MAX_MS = 9_223_372_036_854_775_807
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def nothing_listens_at_the_bootstrap(own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(own_keys_dir))
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")


@pytest.mark.parametrize("retention_ms", [LONG_MAX_MS, 10**15])
def test_the_span_of_a_topic_kept_longer_than_a_date_can_say_is_no_overflow(
    retention_ms: int,
) -> None:
    needed = needed_after_retirement(
        TOPICS, Entitlements.from_registry(TOPICS), "dgal", {REQUESTS: retention_ms}
    )
    assert REQUESTS in needed.because


@pytest.mark.parametrize("retention_ms", [LONG_MAX_MS, 10**15])
def test_prune_keeps_the_key_of_a_topic_kept_as_long_as_kafka_allows(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch, retention_ms: int
) -> None:
    [old_enc, old_sig] = retired_after_a_rotation(
        own_keys_dir, "dgal", NOW - timedelta(days=400), use_from=NOW
    )
    BrokerRetentions(monkeypatch, {REQUESTS: retention_ms})

    ran = CliRunner().invoke(app, ["keys", "prune", "--party", "dgal", "--apply"])
    out = ran.stdout

    assert ran.exit_code == 0, f"{ran.exception!r}: {out}{ran.stderr}"
    assert f"keep dgal enc {old_enc}" in out
    assert old_enc in private_kids(own_keys_dir, "dgal")
    assert f"pruned dgal sig {old_sig}" in out  # the other keys are judged all the same


@pytest.mark.parametrize("days", ["1e12", "inf", "nan", "-0.5"])
def test_an_older_than_no_date_can_say_is_refused_with_its_reason_before_any_key_is_judged(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch, days: str
) -> None:
    """``--older-than`` is the operator's span (stop 56's note: a huge one overflowed
    ``timedelta`` with a traceback, and NaN passed the range check, which compares)."""
    [old_enc, _] = retired_after_a_rotation(
        own_keys_dir, "dgal", NOW - timedelta(days=400), use_from=NOW
    )
    BrokerRetentions(monkeypatch, {REQUESTS: 7 * 86_400_000})

    ran = CliRunner().invoke(
        app, ["keys", "prune", "--party", "dgal", "--apply", "--force", "--older-than", days]
    )

    assert ran.exit_code == 2, f"{ran.exception!r}: {ran.stdout}{ran.stderr}"
    assert ran.exception is None or isinstance(ran.exception, SystemExit)
    assert "--older-than" in ran.stderr
    assert old_enc in private_kids(own_keys_dir, "dgal")


def test_an_older_than_of_zero_days_forced_prunes_a_key_retired_a_day_ago(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero days is a span, not none (``keep_for`` read ``explicit or needed.span``;
    ``--force`` made that harmless, the key is pruned either way: kept as the spec)."""
    [old_enc, _] = retired_after_a_rotation(
        own_keys_dir, "dgal", NOW - timedelta(days=1), use_from=NOW
    )
    BrokerRetentions(monkeypatch, {REQUESTS: 7 * 86_400_000})

    ran = CliRunner().invoke(
        app, ["keys", "prune", "--party", "dgal", "--apply", "--force", "--older-than", "0"]
    )

    assert ran.exit_code == 0, f"{ran.exception!r}: {ran.stdout}{ran.stderr}"
    assert old_enc not in private_kids(own_keys_dir, "dgal")
