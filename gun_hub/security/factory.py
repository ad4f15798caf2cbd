"""Building a party's envelope from the settings (once per process, at start-up)."""

from __future__ import annotations

from gun_hub.security.entitlements import Entitlements
from gun_hub.security.jose_envelope import EnvelopePolicy, JoseEnvelope
from gun_hub.security.keystore import PartyKeys
from gun_hub.security.replay import ReplayGuard, SqliteReplayGuard
from gun_hub.settings import SecuritySettings
from gun_hub.topics import TopicRegistry


def policy_from(settings: SecuritySettings) -> EnvelopePolicy:
    return EnvelopePolicy(
        lifetime_s=settings.message_lifetime_s, max_clock_skew_s=settings.max_clock_skew_s
    )


def build_envelope(
    settings: SecuritySettings,
    party: str,
    topics: TopicRegistry,
    replay: ReplayGuard | None = None,
) -> JoseEnvelope:
    """The envelope of ``party``; replay memory defaults to a SQLite file of its own."""
    keys = PartyKeys.load(settings.keys_dir, party)
    if replay is None:
        replay = SqliteReplayGuard(
            settings.state_dir / f"{topics.prefix}-{party}-replay.sqlite",
            keep_after_expiry_s=settings.max_clock_skew_s,
        )
    return JoseEnvelope(keys, Entitlements.from_registry(topics), replay, policy_from(settings))
