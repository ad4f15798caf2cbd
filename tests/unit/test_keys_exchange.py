"""Each party makes its own private keys and exchanges public keys only (issue 11, item 6).

``keys init --party P`` writes P's private keys and nothing of anyone else's;
``keys export-public --party P`` gives the JWKS P hands to the others; ``keys import-public
FILE --party P`` adds P's public keys, refusing private material, a different key under a
key id already known, and anything in the file in another party's name: a partner's file
is trusted for that partner's keys only. Sealed messages then travel between parties whose
folders never held each other's private keys.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    LOCK_FILE,
    PUBLIC_JWKS,
    KeystoreError,
    KeystoreFolder,
    PartyKeys,
    read_public_keys,
)
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.cli import app

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


def keys(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["keys", *map(str, args)])


def ok(*args: str | Path) -> Result:
    result = keys(*args)
    assert result.exit_code == 0, result.output
    return result


def exported(tmp_path: Path, party: str) -> list[dict[str, Any]]:
    return list(json.loads((tmp_path / f"{party}.pub").read_text())["keys"])


def write_jwks(path: Path, keys: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"keys": keys}))
    return path


def jwks(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / PUBLIC_JWKS).read_text()))


def machine(tmp_path: Path, party: str) -> Path:
    """``party``'s own machine: its keys made there, its public keys exported."""
    folder = tmp_path / party
    ok("init", "--party", party, "--dir", folder)
    ok("export-public", "--party", party, "--dir", folder, "--out", tmp_path / f"{party}.pub")
    return folder


def envelope(folder: Path, party: str) -> JoseEnvelope:
    return JoseEnvelope(
        PartyKeys.load(folder, party), Entitlements.from_registry(TOPICS), MemoryReplayGuard()
    )


def test_init_for_one_party_writes_only_that_partys_private_keys(tmp_path: Path) -> None:
    folder = tmp_path / "dgal"
    ok("init", "--party", "dgal", "--dir", folder)
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE) == [
        "dgal.jwk",
        PUBLIC_JWKS,
    ]
    assert (folder / "dgal.jwk").stat().st_mode & 0o777 == 0o600
    assert {k["party"] for k in jwks(folder)["keys"]} == {"dgal"}
    assert {k["use"] for k in jwks(folder)["keys"]} == {"sig", "enc"}


def test_the_hub_also_gets_an_audit_key_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    ok("init", "--party", "hub", "--dir", folder)
    assert sorted(p.name for p in folder.iterdir() if p.name != LOCK_FILE) == [
        "hub.audit.jwk",
        "hub.jwk",
        PUBLIC_JWKS,
    ]
    assert (folder / "hub.audit.jwk").stat().st_mode & 0o777 == 0o600
    [audit] = [k for k in jwks(folder)["keys"] if k.get("purpose") == "audit"]
    assert (audit["use"], audit["alg"]) == ("sig", "ES256")
    assert audit["not_before"] < audit["not_after"]
    # The envelope never sees it: it cannot sign a message, nor verify one.
    assert audit["kid"] not in PartyKeys.load(folder, "hub").public


def test_init_refuses_to_replace_a_partys_keys(tmp_path: Path) -> None:
    folder = tmp_path / "dgal"
    ok("init", "--party", "dgal", "--dir", folder)
    before = (folder / "dgal.jwk").read_bytes()
    refused = keys("init", "--party", "dgal", "--dir", folder)
    assert refused.exit_code == 1
    assert "rotate" in refused.output
    assert (folder / "dgal.jwk").read_bytes() == before


def test_export_public_holds_no_private_member(tmp_path: Path) -> None:
    folder = tmp_path / "hub"
    ok("init", "--party", "hub", "--dir", folder)
    exported = json.loads(ok("export-public", "--party", "hub", "--dir", folder).stdout)
    assert len(exported["keys"]) == 3  # signing, encryption, audit
    for key in exported["keys"]:
        assert not PRIVATE_MEMBERS & set(key)
        assert key["party"] == "hub"


def test_parties_exchange_public_keys_only_and_messages_travel(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    ok("import-public", tmp_path / "hub.pub", "--party", "hub", "--dir", dgal)
    assert not (hub / "dgal.jwk").exists()
    assert not (dgal / "hub.jwk").exists()
    assert not (dgal / "hub.audit.jwk").exists()

    request = TOPICS.requests("dgal")
    sealed = envelope(hub, "hub").seal(
        b"{}", recipient="dgal", topic=request, content_type=ContentType.JSON
    )
    opened = envelope(dgal, "dgal").open(sealed, topic=request)
    assert opened.sender == "hub"
    answer = envelope(dgal, "dgal").seal(
        b"{}", recipient="hub", topic=TOPICS.responses("dgal"), content_type=ContentType.JSON
    )
    assert envelope(hub, "hub").open(answer, topic=TOPICS.responses("dgal")).sender == "dgal"


def test_import_refuses_private_key_material(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    before = (hub / PUBLIC_JWKS).read_bytes()
    refused = keys("import-public", dgal / "dgal.jwk", "--party", "dgal", "--dir", hub)
    assert refused.exit_code == 1
    assert "private" in refused.output
    assert str(dgal / "dgal.jwk") in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before

    # One private member hidden in an otherwise public set is enough to refuse it all.
    mixed = json.loads((tmp_path / "dgal.pub").read_text())
    mixed["keys"][1]["d"] = json.loads((dgal / "dgal.jwk").read_text())["keys"][1]["d"]
    (tmp_path / "mixed.pub").write_text(json.dumps(mixed))
    assert (
        keys("import-public", tmp_path / "mixed.pub", "--party", "dgal", "--dir", hub).exit_code
        == 1
    )
    assert (hub / PUBLIC_JWKS).read_bytes() == before


def test_import_refuses_another_key_under_a_known_kid(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    before = (hub / PUBLIC_JWKS).read_bytes()
    # An impostor's key, published under dgal's signing key id.
    impostor = tmp_path / "impostor"
    ok("init", "--party", "dgal", "--dir", impostor)
    theirs = jwks(impostor)["keys"]
    genuine_kid = next(k["kid"] for k in jwks(dgal)["keys"] if k["use"] == "sig")
    for key in theirs:
        if key["use"] == "sig":
            key["kid"] = genuine_kid
    (tmp_path / "impostor.pub").write_text(json.dumps({"keys": theirs}))
    refused = keys("import-public", tmp_path / "impostor.pub", "--party", "dgal", "--dir", hub)
    assert refused.exit_code == 1
    assert genuine_kid in refused.output
    assert "different key" in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before


def test_import_refuses_keys_in_the_name_of_the_local_party(tmp_path: Path) -> None:
    hub = machine(tmp_path, "hub")
    forged = tmp_path / "forged-hub"
    ok("init", "--party", "hub", "--dir", forged)
    ok("export-public", "--party", "hub", "--dir", forged, "--out", tmp_path / "forged.pub")
    refused = keys("import-public", tmp_path / "forged.pub", "--party", "hub", "--dir", hub)
    assert refused.exit_code == 1
    assert "hub" in refused.output
    assert "made here" in refused.output


def test_a_retirement_travels_with_the_next_export(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    old = next(k["kid"] for k in jwks(dgal)["keys"] if k["use"] == "sig")
    ok("rotate", "dgal", "--dir", dgal)
    ok("retire", old, "--dir", dgal)
    ok("export-public", "--party", "dgal", "--dir", dgal, "--out", tmp_path / "dgal.pub")
    again = ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    assert "retired" in again.output
    known = read_public_keys(hub / PUBLIC_JWKS)
    assert known[old].status.value == "retired"
    assert sum(1 for k in known.values() if k.party == "dgal") == 4
    # Importing the same file again changes nothing and says so.
    assert (
        "unchanged"
        in ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub).output
    )


def test_an_older_export_cannot_bring_a_retired_key_back(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    old = next(k["kid"] for k in jwks(dgal)["keys"] if k["use"] == "sig")
    ok("retire", old, "--dir", hub)  # retired locally, e.g. on the partner's word
    ok(
        "import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub
    )  # the first, older export
    assert read_public_keys(hub / PUBLIC_JWKS)[old].status.value == "retired"


def test_the_one_folder_init_of_the_demo_stays(tmp_path: Path) -> None:
    folder = tmp_path / "all"
    ok("init", "--dir", folder)
    parties = {k["party"] for k in jwks(folder)["keys"]}
    assert {"hub", "clearance", "dgal", "cites", "dga"} <= parties
    for party in parties:
        assert (folder / f"{party}.jwk").exists()
    assert (folder / "hub.audit.jwk").exists()


def test_import_of_something_that_is_no_jwks_names_the_file(tmp_path: Path) -> None:
    hub = machine(tmp_path, "hub")
    for name, content in {
        "empty.pub": "",
        "list.pub": "[]",
        "text.pub": "not json at all",
        "bad-point.pub": json.dumps(
            {
                "keys": [
                    {
                        "kty": "EC",
                        "crv": "P-256",
                        "x": "AAAA",
                        "y": "AAAA",
                        "kid": "dgal-sig-x",
                        "use": "sig",
                        "alg": "ES256",
                        "party": "dgal",
                    }
                ]
            }
        ),
    }.items():
        (tmp_path / name).write_text(content)
        refused = keys("import-public", tmp_path / name, "--party", "dgal", "--dir", hub)
        assert refused.exit_code == 1, name
        assert str(tmp_path / name) in refused.output, name
        assert "Traceback" not in refused.output


def test_keystore_folder_api_refuses_private_members_too(tmp_path: Path) -> None:
    folder = tmp_path / "dgal"
    KeystoreFolder(folder).init_party("dgal")
    private = json.loads((folder / "dgal.jwk").read_text())
    with pytest.raises(KeystoreError, match="private"):
        KeystoreFolder(tmp_path / "hub").import_public(private, party="dgal", source="a dict")


def test_a_key_file_of_another_party_is_refused(tmp_path: Path) -> None:
    hub, dgal = machine(tmp_path, "hub"), machine(tmp_path, "dgal")
    before = (hub / PUBLIC_JWKS).read_bytes()
    refused = keys("import-public", tmp_path / "dgal.pub", "--party", "cites", "--dir", hub)
    assert refused.exit_code == 1
    kid = next(k["kid"] for k in jwks(dgal)["keys"])
    assert kid in refused.output
    assert "'dgal'" in refused.output
    assert "'cites'" in refused.output
    assert "nothing imported" in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before


def test_import_public_needs_the_party_whose_file_it_is(tmp_path: Path) -> None:
    hub = machine(tmp_path, "hub")
    machine(tmp_path, "dgal")
    before = (hub / PUBLIC_JWKS).read_bytes()
    refused = keys("import-public", tmp_path / "dgal.pub", "--dir", hub)
    assert refused.exit_code != 0
    assert "--party" in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before


@pytest.mark.parametrize("impersonated", ["gateway", "clearance"])
def test_a_partners_file_with_a_signing_key_in_another_partys_name_is_refused_whole(
    tmp_path: Path, impersonated: str
) -> None:
    """CITES makes a key of its own labelled as the intake gateway's (or the clearance
    system's) and slips it into its export: imported, it would let CITES seal declarations
    in any declarant's name."""
    hub = machine(tmp_path, "hub")
    machine(tmp_path, "cites")
    made_by_cites = machine(tmp_path / "cites-workshop", impersonated)
    [forged] = [
        dict(k, kid="cites-sig-extra")
        for k in jwks(made_by_cites)["keys"]
        if k["use"] == "sig" and k["party"] == impersonated
    ]
    cites_file = write_jwks(tmp_path / "cites-file.pub", [*exported(tmp_path, "cites"), forged])
    before = (hub / PUBLIC_JWKS).read_bytes()

    refused = keys("import-public", cites_file, "--party", "cites", "--dir", hub)

    assert refused.exit_code == 1
    assert "cites-sig-extra" in refused.output
    assert repr(impersonated) in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before  # not even CITES's own keys


def test_a_partners_file_cannot_redirect_what_is_encrypted_to_the_hub(tmp_path: Path) -> None:
    """At DGAL's machine an encryption key labelled ``hub`` in CITES's export would become
    the newest key of the hub, the one DGAL's adapter encrypts its answers to."""
    machine(tmp_path, "hub")
    dgal = machine(tmp_path, "dgal")
    machine(tmp_path, "cites")
    ok("import-public", tmp_path / "hub.pub", "--party", "hub", "--dir", dgal)
    genuine = PartyKeys.load(dgal, "dgal").encryption_key_for("hub").kid
    made_by_cites = machine(tmp_path / "cites-workshop", "hub")
    [redirect] = [
        dict(k, kid="cites-enc-2")
        for k in jwks(made_by_cites)["keys"]
        if k["use"] == "enc" and not k.get("purpose")
    ]
    cites_file = write_jwks(tmp_path / "cites-file.pub", [*exported(tmp_path, "cites"), redirect])

    refused = keys("import-public", cites_file, "--party", "cites", "--dir", dgal)

    assert refused.exit_code == 1
    assert "cites-enc-2" in refused.output
    assert "'hub'" in refused.output
    assert PartyKeys.load(dgal, "dgal").encryption_key_for("hub").kid == genuine


def test_a_partners_file_cannot_retire_another_partys_key(tmp_path: Path) -> None:
    hub = machine(tmp_path, "hub")
    machine(tmp_path, "dgal")
    machine(tmp_path, "cites")
    ok("import-public", tmp_path / "dgal.pub", "--party", "dgal", "--dir", hub)
    [dgal_signing] = [k for k in exported(tmp_path, "dgal") if k["use"] == "sig"]
    retirement = dict(dgal_signing, status="retired", retired="2026-01-01T00:00:00+00:00")
    cites_file = write_jwks(tmp_path / "cites-file.pub", [*exported(tmp_path, "cites"), retirement])

    refused = keys("import-public", cites_file, "--party", "cites", "--dir", hub)

    assert refused.exit_code == 1
    assert dgal_signing["kid"] in refused.output
    assert "'dgal'" in refused.output
    known = read_public_keys(hub / PUBLIC_JWKS)
    assert known[dgal_signing["kid"]].status.value == "active"
    assert not any(k.party == "cites" for k in known.values())


def test_a_key_whose_id_is_not_of_its_party_is_refused(tmp_path: Path) -> None:
    """Every key id a party makes starts with its name: one that does not was not made by
    ``keys init`` or ``rotate`` of that party (and reads, in a list, as another's)."""
    hub = machine(tmp_path, "hub")
    machine(tmp_path, "cites")
    renamed = [
        dict(k, kid="dgal-sig-20260101T000000-000000") if k["use"] == "sig" else k
        for k in exported(tmp_path, "cites")
    ]
    cites_file = write_jwks(tmp_path / "cites-file.pub", renamed)
    before = (hub / PUBLIC_JWKS).read_bytes()

    refused = keys("import-public", cites_file, "--party", "cites", "--dir", hub)

    assert refused.exit_code == 1
    assert "dgal-sig-20260101T000000-000000" in refused.output
    assert "'cites-'" in refused.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before


def test_keystore_folder_api_checks_the_party_too(tmp_path: Path) -> None:
    machine(tmp_path, "dgal")
    data = {"keys": exported(tmp_path, "dgal")}
    with pytest.raises(KeystoreError, match="nothing imported"):
        KeystoreFolder(tmp_path / "hub").import_public(data, party="cites", source="a dict")
    report = KeystoreFolder(tmp_path / "hub").import_public(data, party="dgal", source="a dict")
    assert {k.party for k in report.added} == {"dgal"}
