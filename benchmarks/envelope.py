"""Cost of sealing (sign then encrypt) and opening (decrypt then verify) one message.

CPU time per call (the machine is shared: the wall clock would count the waits for a
core), and beside it the cost of the cryptography alone, the operations the contract
fixes per message (ADR 0016): sealing signs (ECDSA), makes an ephemeral key and agrees
on a key with the recipient's (ECDH); opening agrees (ECDH) and verifies (ECDSA). What
lies above that floor is the envelope's own work: JSON, base64url, AES, the checks.

Run: ./tasks bench-envelope
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.common import calls_made, save, summary_us, time_per_call
from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder, PartyKeys
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.cli.progress import ProgressBar, progress_bar

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
CPU = time.process_time


def envelope(keys: Path, party: str) -> JoseEnvelope:
    return JoseEnvelope(
        PartyKeys.load(keys, party), Entitlements.from_registry(TOPICS), MemoryReplayGuard()
    )


PRESEALED = 3000  # messages sealed beforehand for the open benchmark (one open each)
CALLS = 400


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        KeystoreFolder(keys).init(["hub", "clearance", "cites", "dga", "dgal"])
        hub, dgal = envelope(keys, "hub"), envelope(keys, "dgal")
        result: dict[str, object] = {}
        sizes = (1500, 8000)
        total = len(sizes) * (PRESEALED + 2 * calls_made(CALLS)) + 2 * calls_made(CALLS)
        with progress_bar("bench-envelope", total=total, unit="messages") as bar:
            for size in sizes:
                result[f"{size} bytes"] = measure(hub, dgal, size, bar)
            result["cryptography alone"] = floor(bar)
        print(f"saved {save('envelope', result)}")


def measure(hub: JoseEnvelope, dgal: JoseEnvelope, size: int, bar: ProgressBar) -> object:
    """Seal and open figures for one payload size."""
    payload = b"x" * size
    topic = TOPICS.requests("dgal")

    def seal(payload: bytes = payload, topic: str = topic) -> bytes:
        return hub.seal(payload, recipient="dgal", topic=topic, content_type=ContentType.JSON)

    sealed = [seal() for _ in range(PRESEALED)]
    bar.advance(PRESEALED)
    counter = iter(range(len(sealed)))

    def open_one(
        topic: str = topic,
        sealed: list[bytes] = sealed,
        counter: Iterator[int] = counter,
    ) -> None:
        index = next(counter)
        dgal.open(sealed[index], topic=topic, position=f"{topic}/0/{index}")

    seal_figures = summary_us(time_per_call(seal, calls=CALLS, progress=bar, clock=CPU))
    open_figures = summary_us(time_per_call(open_one, calls=CALLS, progress=bar, clock=CPU))
    print(
        f"{size}-byte payload: seal {seal_figures['median_us']} us, "
        f"open {open_figures['median_us']} us of CPU (median), "
        f"sealed size {len(sealed[0])} bytes"
    )
    return {"seal": seal_figures, "open": open_figures, "sealed_bytes": len(sealed[0])}


def floor(bar: ProgressBar) -> object:
    """The per-message cryptography of sealing and of opening, nothing else."""
    signer = ec.generate_private_key(ec.SECP256R1())
    recipient = ec.generate_private_key(ec.SECP256R1()).public_key()
    ecdsa, ecdh = ec.ECDSA(hashes.SHA256()), ec.ECDH()
    signing_input = b"x" * 300  # the size of a protected header and a short payload
    signature = signer.sign(signing_input, ecdsa)
    verifier = signer.public_key()

    def seal_crypto() -> None:
        signer.sign(signing_input, ecdsa)
        ec.generate_private_key(ec.SECP256R1()).exchange(ecdh, recipient)

    def open_crypto() -> None:
        signer.exchange(ecdh, recipient)
        verifier.verify(signature, signing_input, ecdsa)

    seal_figures = summary_us(time_per_call(seal_crypto, calls=CALLS, progress=bar, clock=CPU))
    open_figures = summary_us(time_per_call(open_crypto, calls=CALLS, progress=bar, clock=CPU))
    print(
        f"the cryptography alone: seal {seal_figures['median_us']} us "
        f"(sign, ephemeral key, ECDH), open {open_figures['median_us']} us (ECDH, verify)"
    )
    return {"seal": seal_figures, "open": open_figures}


if __name__ == "__main__":
    main()
