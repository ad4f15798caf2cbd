"""``gun-hub keys``: make, rotate, retire, prune, export and import keys.

Each party makes its own private keys on its own machine and exchanges public keys only::

    gun-hub keys init --party dgal --dir DIR          # dgal's private keys, nobody else's
    gun-hub keys export-public --party dgal --out dgal.jwks
    gun-hub keys import-public hub.jwks --party hub --dir DIR   # the hub's public keys

``keys init`` without ``--party`` makes every party's keys in one folder (the demo).
Either way each party also gets a state key (AES-256-GCM, in its private file only) that
seals what it keeps at rest; ``keys rotate P --state`` adds a new one, which opens at once
and seals from its use time (every process of P holds it by then).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from aiokafka.errors import KafkaError

from gun_contract.kafka.client import from_settings
from gun_contract.security.entitlements import Entitlements, parties
from gun_contract.security.keystore import (
    AUDIT_VALIDITY_DAYS,
    AUDITING_PARTY,
    ROTATION_GRACE,
    KeyStatus,
    KeystoreError,
    KeystoreFolder,
    KeyUse,
    NoKnownSpan,
    PublicKey,
    StateKey,
    read_state_keys,
    sealing_state_key,
)
from gun_contract.security.keystore import now as keys_now
from gun_contract.settings import Settings
from gun_contract.topics import TopicRegistry
from gun_hub.cli.kafka import registry_for
from gun_hub.cli.startup import aiokafka_quiet, error_text, settings_or_exit
from gun_hub.security.key_retention import (
    RetentionNotDescribed,
    addressed_to,
    needed_after_retirement,
    retentions_on_the_broker,
)

app = typer.Typer(help="Signing, encryption, audit and state keys.", no_args_is_help=True)

DirOption = typer.Option(None, "--dir", help="Keystore folder (default: the configured one).")
ValidOption = typer.Option(
    AUDIT_VALIDITY_DAYS, help="Days an audit key may sign checkpoints (hub only).", min=1
)


def _folder(directory: Path | None) -> KeystoreFolder:
    return KeystoreFolder(directory or settings_or_exit().security.keys_dir)


def _fail(err: KeystoreError) -> typer.Exit:
    typer.echo(str(err), err=True)
    return typer.Exit(1)


def _describe(key: PublicKey, others: Mapping[str, PublicKey]) -> str:
    """One line for ``key``; ``others`` (the JWKS it is in) tells whether a key waiting for
    its ``use_from`` is in use already: with no older key of its kind still active (retired
    early, a leak), the processes use the newest at once (keystore ``_current``)."""
    what = key.purpose or key.use.value
    status = key.status.value
    ahead = key.use_from if key.status is KeyStatus.ACTIVE else None
    now = datetime.now(UTC)
    if ahead is not None and ahead > now:
        planned = ahead.isoformat(timespec="seconds")
        if _in_use_early(key, others, now):
            status += f", published, in use now (the keys before it retired; planned {planned})"
        else:
            status += f", published, in use from {planned}"
    return f"{key.party} {what} {key.kid} ({status}) thumbprint {key.thumbprint()}"


def _describe_state_keys(party: str, state_keys: list[StateKey]) -> str:
    """The lines of ``party``'s state keys (private, never exported: only their ids and
    use times), which one seals now and when the next one will (review stop 41, V-b: a
    state key's use time was printed by ``keys rotate --state`` alone)."""
    now = keys_now()
    sealing, _ = sealing_state_key(state_keys, now)
    lines = []
    for key in state_keys:
        if key is sealing:
            status = "seals now"
        elif key.use_from is not None and key.use_from > now:
            status = f"opens now, seals from {key.use_from.isoformat(timespec='seconds')}"
        else:
            status = "opens what it sealed"
        lines.append(f"{party} state {key.kid} ({status}; private, never exported)")
    return "\n".join(lines)


def _in_use_early(key: PublicKey, others: Mapping[str, PublicKey], now: datetime) -> bool:
    """Whether ``key``, not in use before its ``use_from``, is used now anyway: no other
    active key of its party, use and purpose is in use now (review stop 41, R4)."""
    return not any(
        other.kid != key.kid
        and other.party == key.party
        and other.use is key.use
        and other.purpose == key.purpose
        and other.status is KeyStatus.ACTIVE
        and other.in_use_at(now)
        for other in others.values()
    )


@app.command()
def init(
    directory: Path | None = DirOption,
    party: str | None = typer.Option(
        None,
        help="Make only this party's keys, on its own machine; its public keys go out with "
        "export-public. Without it: every party's keys in one folder (demo, tests).",
    ),
    force: bool = typer.Option(
        False,
        help="Replace existing keys (the envelope keys stop working; the state keys are "
        "kept, a new one added: what they sealed still opens).",
    ),
    audit_valid_days: int = ValidOption,
) -> None:
    """Make keys: one signing and one encryption key per party, the hub's audit key, the
    public jwks.json, and each party's state key (sealing its data at rest; private only)."""
    folder = _folder(directory)
    try:
        if party is not None:
            kids = folder.init_party(party, force=force, audit_valid_days=audit_valid_days)
            typer.echo(
                f"keys of {party} written to {folder.folder} (private: mode 0600): "
                f"{', '.join(kids)}; hand out its public keys with: gun-hub keys "
                f"export-public --party {party}"
            )
            return
        created = folder.init(
            parties(registry_for(settings_or_exit())),
            force=force,
            audit_valid_days=audit_valid_days,
        )
    except KeystoreError as err:
        raise _fail(err) from None
    typer.echo(f"keys for {', '.join(created)} written to {folder.folder} (private: mode 0600)")


@app.command()
def rotate(
    party: str,
    directory: Path | None = DirOption,
    audit: bool = typer.Option(
        False, help=f"A new audit key ({AUDITING_PARTY} only) instead of envelope keys."
    ),
    state: bool = typer.Option(
        False,
        help="A new state key (opens at once, seals PARTY's data at rest from --use-from on; "
        "the old ones keep opening what they sealed) instead of envelope keys. Hand "
        "PARTY.jwk to every process of PARTY and restart them before then.",
    ),
    audit_valid_days: int = ValidOption,
    use_from: datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
        help="When the new keys start to sign and be encrypted to, or a new state key to "
        "seal (UTC unless it names a zone); default: "
        f"{ROTATION_GRACE.total_seconds() / 60:g} minutes from now. Every other party must "
        "have imported them (every process of PARTY hold the state key) by then.",
    ),
    use_now: bool = typer.Option(
        False,
        "--use-now",
        help="Use the new keys at once: every reader shares this folder (it looks again on "
        "an unknown key id), or the old key leaked (retire it too).",
    ),
) -> None:
    """Add a new key generation for PARTY, published at once in jwks.json (readers accept
    it from when they read it, within seconds) and used to sign and be encrypted to only
    from --use-from, 10 minutes ahead by default; the old keys verify until retired. A new
    state key (--state) likewise opens at once and seals only from --use-from."""
    if use_now and use_from is not None:
        typer.echo("--use-now or --use-from, not both", err=True)
        raise typer.Exit(2)
    # The key store's clock: the one that judges use times (and names the key).
    when = keys_now() if use_now else use_from
    try:
        kids = _folder(directory).rotate(
            party, audit=audit, state=state, audit_valid_days=audit_valid_days, use_from=when
        )
    except KeystoreError as err:
        raise _fail(err) from None
    if audit:
        typer.echo(f"{party}: new keys {', '.join(kids)}")
        return
    if state:
        typer.echo(_new_state_key(_folder(directory), party, kids[-1]))
        return
    [entry] = {_folder(directory).public_keys()[kid].use_from for kid in kids}
    at = entry.isoformat(timespec="seconds") if entry is not None else "now"
    typer.echo(
        f"{party}: new keys {', '.join(kids)}, published now, in use from {at}; other "
        f"machines must import them before then (gun-hub keys export-public --party {party})"
    )


def _new_state_key(folder: KeystoreFolder, party: str, kid: str) -> str:
    """What ``keys rotate P --state`` says: when the new key seals, and what to do first."""
    [key] = [k for k in read_state_keys(folder.folder, party) if k.kid == kid]
    if key.use_from is None:
        return f"{party}: new state key {kid}, its first: seals from now"
    if key.use_from <= keys_now():
        return (
            f"{party}: new state key {kid}, opens and seals from now; a process of {party} "
            f"not given this {party}.jwk yet stops on what it seals, naming the key, until "
            "it is (hand it out and restart them)"
        )
    return (
        f"{party}: new state key {kid}, opens now, seals from "
        f"{key.use_from.isoformat(timespec='seconds')}; hand {folder.private_file(party)} "
        f"to every process of {party} and restart them before then"
    )


@app.command()
def retire(
    kid: str,
    since: datetime | None = typer.Option(
        None,
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
        help="Date the retirement back to this time (UTC unless it names a zone): for a "
        "leaked key, whatever the broker accepted since the leak is refused too.",
    ),
    last: bool = typer.Option(
        False,
        "--last",
        help="Retire it even if it is its party's last active signing key here (rotate "
        "first: that party's running processes would keep the keys loaded before, later "
        "retirements ignored, until restarted, and would not start).",
    ),
    directory: Path | None = DirOption,
) -> None:
    """Retire a key: what the broker accepts from now on (from --since) signed with it, or
    encrypted to it, is refused (running processes within seconds); a backlog the broker
    accepted before still opens, and checkpoints it signed before stay valid."""
    try:
        folder = _folder(directory)
        party = folder.retire(kid, since=since, last=last)
        keys = folder.public_keys()
    except KeystoreError as err:
        raise _fail(err) from None
    typer.echo(f"{party}: key {kid} retired")
    retired = keys.get(kid)
    now = datetime.now(UTC)
    for key in keys.values():
        planned = key.use_from
        if (
            retired is not None
            and planned is not None
            and planned > now
            and key.status is KeyStatus.ACTIVE
            and (key.party, key.use, key.purpose) == (retired.party, retired.use, retired.purpose)
            and _in_use_early(key, keys, now)
        ):
            typer.echo(
                f"{party}: key {key.kid} is in use now, not from its planned "
                f"{planned.isoformat(timespec='seconds')}: every process must have the "
                "new jwks.json now"
            )


@app.command()
def prune(
    party: list[str] | None = typer.Option(
        None,
        "--party",
        help="Whose keys (again for several; default: every party whose private file is in "
        "the folder).",
    ),
    older_than: float | None = typer.Option(
        None,
        "--older-than",
        min=0,
        max=365_000,  # a thousand years: beyond, no date can say when (for ever: keep them)
        help="Days since an encryption key's retirement after which it is pruned, instead of "
        "twice the longest retention of the topics addressed to the party, the registry's or "
        "the broker's (shorter: only with --force). Needed when the broker cannot be asked.",
    ),
    force: bool = typer.Option(
        False,
        help="Also prune encryption keys retired more recently than that (what the log still "
        "holds encrypted to them is then refused), or retired with no time.",
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Remove them; without it, only say what would be removed."
    ),
    directory: Path | None = DirOption,
) -> None:
    """Remove the private parts of retired keys no record can still need: a retired
    signing key's at once, a retired encryption key's once every record encrypted to it
    before its retirement can have left the topics, by their retention as the broker
    describes it (or the registry's, if longer). Their public parts stay in jwks.json,
    so a late record is refused as sealed to a pruned key. A key still current is never
    pruned. Without --apply, only says what it would do. Exit status 1 when an encryption
    key could not be judged (no broker to ask: give --older-than)."""
    settings = settings_or_exit()
    folder = KeystoreFolder(directory or settings.security.keys_dir)
    topics = registry_for(settings)
    chosen = party or sorted(folder.local_parties())
    pruned = kept = 0
    try:
        spans = _Spans.asked(
            settings,
            topics,
            # Only these need the broker: pruning a signing key needs none.
            [name for name in chosen if _retired_encryption_keys(folder, name)],
            older_than=older_than,
            force=force,
        )
        # Every party's span first: a refusal (--older-than too short) changes nothing.
        keep_for = {name: spans.keep_for(name) for name in chosen}
        for name in chosen:
            decisions = folder.prune(name, keep_for=keep_for[name], force=force, apply=apply)
            for decision in decisions:
                if decision.prunable:
                    pruned += 1
                    label = "pruned" if apply else "would prune"
                else:
                    kept += 1
                    label = "keep"
                typer.echo(
                    f"{label} {decision.party} {decision.kind} {decision.kid}: {decision.reason}"
                )
    except KeystoreError as err:
        raise _fail(err) from None
    if apply:
        typer.echo(f"{pruned} private key(s) pruned, {kept} kept")
    else:
        typer.echo(f"{pruned} private key(s) would be pruned, {kept} kept: run again with --apply")
    if spans.unreachable is not None and older_than is None:
        # One line, and the exit status shows it to a cron job.
        typer.echo(
            f"encryption keys of {', '.join(spans.waiting)} not pruned: {spans.unreachable}; "
            "give --older-than DAYS (twice how long the brokers keep those topics' records) "
            "to prune them without it",
            err=True,
        )
        raise typer.Exit(1)


def _retired_encryption_keys(folder: KeystoreFolder, party: str) -> list[str]:
    """``party``'s retired encryption keys with a retirement time whose private part is
    still in its file: those whose pruning depends on how long the topics keep records."""
    decisions = folder.prune(party, keep_for=NoKnownSpan(""), apply=False)
    return [d.kid for d in decisions if d.use is KeyUse.ENC and d.retired]


@dataclass(frozen=True, slots=True)
class _Spans:
    """How long after its retirement each party's encryption keys are kept, from the
    topics' retention on the broker (asked once) and the registry, or ``--older-than``."""

    topics: TopicRegistry
    entitlements: Entitlements
    waiting: list[str]  # the parties with a retired encryption key to judge
    on_broker: dict[str, int | None]
    unreachable: str | None  # why the broker could not say
    older_than: float | None
    force: bool

    @classmethod
    def asked(
        cls,
        settings: Settings,
        topics: TopicRegistry,
        waiting: list[str],
        *,
        older_than: float | None,
        force: bool,
    ) -> _Spans:
        entitlements = Entitlements.from_registry(topics)
        # A party no topic is addressed to (the gateway) has nothing on the broker to wait for.
        waiting = [name for name in waiting if addressed_to(topics, entitlements, name)]
        names = sorted(
            {spec.name for name in waiting for spec in addressed_to(topics, entitlements, name)}
        )
        on_broker: dict[str, int | None] = {}
        unreachable = None
        if names:
            try:
                with aiokafka_quiet():  # what fails is said once, in the refusal
                    on_broker = asyncio.run(
                        retentions_on_the_broker(from_settings(settings.kafka), names)
                    )
            except (KafkaError, OSError, RetentionNotDescribed) as err:  # OSError: timeouts
                unreachable = (
                    f"Kafka at {settings.kafka.bootstrap_servers} could not say how long it "
                    f"keeps {', '.join(names)} ({error_text(err)})"
                )
        if unreachable is not None and older_than is not None:
            typer.echo(f"{unreachable}: going by --older-than {older_than:g}", err=True)
        return cls(topics, entitlements, waiting, on_broker, unreachable, older_than, force)

    def keep_for(self, party: str) -> timedelta | NoKnownSpan:
        """``--older-than`` where given (not shorter than what the topics need, unless
        forced), else what the topics need; no span while that is not known."""
        explicit = timedelta(days=self.older_than) if self.older_than is not None else None
        if self.unreachable is not None and party in self.waiting and explicit is None:
            return NoKnownSpan("how long its topics keep records is not known (no broker)")
        needed = needed_after_retirement(self.topics, self.entitlements, party, self.on_broker)
        if needed.span is None:
            why = f"{needed.because}: a key retired any time ago may still be needed"
            if explicit is None:
                return NoKnownSpan(f"{why} (--older-than DAYS --force to prune)")
            if not self.force:
                typer.echo(f"{party}: {why}; add --force to prune with --older-than", err=True)
                raise typer.Exit(1)
            return explicit
        if explicit is not None and explicit < needed.span and not self.force:
            typer.echo(
                f"{party}: --older-than {self.older_than:g} is shorter than the "
                f"{needed.span.total_seconds() / 86_400:g} days a record addressed to {party} "
                f"can stay in the topics ({needed.because}); records still there "
                "encrypted to a key pruned earlier would be refused: add --force to do so",
                err=True,
            )
            raise typer.Exit(1)
        if explicit is None and party in self.waiting:
            days = needed.span.total_seconds() / 86_400
            typer.echo(
                f"{party}: encryption keys kept {days:g} days after retirement: {needed.because}"
            )
        return explicit if explicit is not None else needed.span  # 0 days is a span


@app.command("export-public")
def export_public(
    party: str = typer.Option(..., help="Whose public keys."),
    out: Path | None = typer.Option(None, help="Write to this file (default: standard output)."),
    directory: Path | None = DirOption,
) -> None:
    """PARTY's public keys as a JWKS, retired ones included: what it hands to the others."""
    folder = _folder(directory)
    try:
        jwks = folder.export_public(party)
    except KeystoreError as err:
        raise _fail(err) from None
    text = json.dumps(jwks, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    keys = folder.public_keys()
    typer.echo(f"{len(jwks['keys'])} public keys of {party} written to {out}:", err=True)
    for entry in jwks["keys"]:
        typer.echo(f"  {_describe(keys[entry['kid']], keys)}", err=True)


@app.command("import-public")
def import_public(
    file: Path = typer.Argument(..., help="A JWKS exported by another party."),
    party: str = typer.Option(
        ...,
        help="The party that exported FILE: every key and retirement in it must be its own.",
    ),
    directory: Path | None = DirOption,
) -> None:
    """Add PARTY's public keys to this folder's jwks.json. FILE may be a standard JWKS
    (RFC 7517: no "party", thumbprint key ids, "use" or "alg" left out where the other
    says it). Refuses the whole file if it holds private key material, a key or
    retirement in another party's name, a key id that reads as another party's, a
    different key under a known key id, a key already registered under another id, or
    keys in the name of a party whose keys are made here. Compare the thumbprints with
    PARTY before trusting them."""
    folder = _folder(directory)
    try:
        report = folder.import_public_file(file, party=party)
        everything = folder.public_keys()
    except KeystoreError as err:
        raise _fail(err) from None
    for label, keys in (
        ("added", report.added),
        ("retired", report.retired),
        ("stays retired", report.kept_retired),
        ("unchanged", report.unchanged),
    ):
        for key in keys:
            typer.echo(f"{label}: {_describe(key, everything)}")


@app.command("list")
def list_keys(directory: Path | None = DirOption) -> None:
    """Every key of jwks.json: party, use, id, status and thumbprint."""
    folder = _folder(directory)
    try:
        keys = folder.public_keys()
    except KeystoreError as err:
        raise _fail(err) from None
    for key in keys.values():
        typer.echo(_describe(key, keys))
    for party in sorted(folder.local_parties()):
        try:
            state_keys = read_state_keys(folder.folder, party)
        except KeystoreError:
            continue  # a file without state keys (made before them): nothing to list
        typer.echo(_describe_state_keys(party, state_keys))
