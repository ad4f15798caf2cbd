"""``gun-hub keys init | rotate | retire | list``: the keystore folder."""

from __future__ import annotations

from pathlib import Path

import typer

from gun_hub.cli.kafka import registry_for
from gun_hub.security.entitlements import parties
from gun_hub.security.keystore import KeystoreError, KeystoreFolder
from gun_hub.settings import load_settings

app = typer.Typer(help="Signing and encryption keys of every party.", no_args_is_help=True)

DirOption = typer.Option(None, "--dir", help="Keystore folder (default: the configured one).")


def _folder(directory: Path | None) -> KeystoreFolder:
    return KeystoreFolder(directory or load_settings().security.keys_dir)


@app.command()
def init(
    directory: Path | None = DirOption,
    force: bool = typer.Option(False, help="Replace existing keys (they stop working)."),
) -> None:
    """One signing and one encryption key per party, and the public jwks.json."""
    folder = _folder(directory)
    try:
        created = folder.init(parties(registry_for(load_settings())), force=force)
    except KeystoreError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"keys for {', '.join(created)} written to {folder.folder} (private: mode 0600)")


@app.command()
def rotate(party: str, directory: Path | None = DirOption) -> None:
    """Add a new key generation for PARTY; the old keys verify until retired."""
    try:
        kids = _folder(directory).rotate(party)
    except KeystoreError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{party}: new keys {', '.join(kids)}")


@app.command()
def retire(kid: str, directory: Path | None = DirOption) -> None:
    """Retire a key: messages signed with it are refused from now on."""
    try:
        party = _folder(directory).retire(kid)
    except KeystoreError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{party}: key {kid} retired")
