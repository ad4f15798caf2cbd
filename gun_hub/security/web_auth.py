"""Who is asking the hub's web listeners (ADR 0007, docs/security.md "Who may see what").

* **Traders** present a short-lived token from the clearance portal, which authenticated
  them: a compact JWS (ES256) signed with a portal key whose *public* half the hub is
  configured with (a JWKS file), issued by the portal (``iss``), for the hub (``aud``),
  naming the trader's EORI as its subject (``sub``), with ``iat`` and a near ``exp``.
  The hub needs no trader accounts and holds no secret to check them. Lodging over HTTP
  asks for a scope as well (``gun:lodge`` in ``scope``); the lookup asks for none.
* **Customs officers** give a name and a password (HTTP basic, over TLS or a trusted
  network), checked against a file of scrypt hashes: the hub never holds a plain password,
  and the repository holds neither (tests and the demo generate theirs at run time).

Both files are read again when they change, so a rotated portal key or a removed officer
takes effect without a restart. Nothing here logs or returns a token, a password or a
hash; errors name files, key ids and reasons only.

``gun-hub portal init`` / ``gun-hub portal token`` play the portal's part for local runs
and tests (:func:`generate_portal_key`, :func:`issue_trader_token`); ``gun-hub officers
add`` writes an officer's hash (:func:`add_officer`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gun_contract.private_files import refuse_if_shared
from gun_contract.settings import DEFAULT_LODGING_SCOPE
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.security.client_address import ClientAddresses

log = logging.getLogger(__name__)

TOKEN_ALG = "ES256"  # noqa: S105 - an algorithm name, not a secret
TOKEN_CURVE = "P-256"  # noqa: S105 - a curve name, not a secret
# A trader token is a few hundred bytes; anything much larger is refused before parsing.
MAX_TOKEN_BYTES = 4096
# The EORI format of the contract (schemas/common-types.xsd).
EORI = re.compile(r"[A-Z]{2}[0-9A-Z]{1,15}")
OFFICER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_PASSWORD_BYTES = 1024
_BEARER = re.compile(r"Bearer ([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")
# A scope claim: scope tokens (printable ASCII but space, " and \) one space apart.
_SCOPE_NAME = r"[\x21\x23-\x5b\x5d-\x7e]+"
_SCOPE = re.compile(rf"{_SCOPE_NAME}(?: {_SCOPE_NAME})*")
_BASIC = re.compile(r"Basic ([A-Za-z0-9+/=]{1,2048})")


class Unauthenticated(Exception):
    """The caller did not prove who it is. ``reason`` is one word from a small closed set
    (a metric label); the message is for logs and never holds the caller's secrets."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AccessConfigError(RuntimeError):
    """A key or credentials file cannot be used; the message names the file."""


class AccessWithdrawn(AccessConfigError):
    """A key or credentials file is gone, or grants nothing: everything it granted is
    withdrawn (at start-up, it cannot be used)."""


def _now() -> float:
    return time.time()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created so, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)


# The stamp of a watched file withdrawn: any file found later differs from it.
_WITHDRAWN = (-2, -2, -2)


class _WatchedFile:
    """A file parsed again when it changes (checked at most every ``check_every_s``).

    A file that cannot be parsed at start-up is an error; one that breaks later (half
    written by an editor) keeps the last good contents and is logged once per change. One
    that is gone, cannot be read, or grants nothing (:class:`AccessWithdrawn`) withdraws
    what it granted at once: ``withdrawn()`` is the value then, until it is back. Kept
    like a broken one, the only portal key of a file emptied or deleted after it leaked
    went on being believed (review stop 46).
    """

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes, Path], Any],
        *,
        withdrawn: Callable[[], Any] = dict,
        private: bool = False,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._parse = parse
        self._withdrawn = withdrawn
        self._private = private
        self._check_every_s = check_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._value = self._load()
        self._checked = clock()

    def _stat(self) -> tuple[int, int, int]:
        try:
            found = self.path.stat()
        except OSError as err:
            raise AccessWithdrawn(f"cannot read {self.path}: {err.strerror}") from None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    def _load(self) -> Any:
        try:
            if self._private:  # checked at every reading: a file replaced may be shared
                refuse_if_shared(self.path, AccessConfigError)
            data = self.path.read_bytes()
        except OSError as err:
            raise AccessWithdrawn(f"cannot read {self.path}: {err.strerror}") from None
        return self._parse(data, self.path)

    def current(self) -> Any:
        now = self._clock()
        if now - self._checked < self._check_every_s:
            return self._value
        with self._lock:
            self._checked = now
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._value = self._load()
                    self._stamp = stamp
                    log.info("%s changed: read again", self.path)
            except AccessWithdrawn as err:
                if self._stamp != _WITHDRAWN:  # said once, not at every check
                    # The reason is the message: no traceback (a file removed on purpose).
                    log.error("%s: everything it granted is refused until it is back", err)  # noqa: TRY400
                self._value = self._withdrawn()
                self._stamp = _WITHDRAWN  # read again at the next check
            except AccessConfigError as err:
                log.warning("%s: keeping what was read before: %s", self.path, err)
                self._stamp = (-1, -1, -1)  # try again at the next check
            return self._value


# -- traders: tokens from the clearance portal ---------------------------------------------


def _parse_portal_jwks(data: bytes, path: Path) -> dict[str, ECKey]:
    """Public ES256 (P-256) keys by ``kid``. A private key in the file is refused: the hub
    only ever holds the portal's public keys. A file with nothing in it withdraws every
    key, as one with an empty key set does (truncating it is how an operator empties it)."""
    if not data.strip():
        raise AccessWithdrawn(f"{path} is empty")
    try:
        document = parse_untrusted(data)
        # A JWK Set, or a single JWK (checked the same way).
        entries = [document] if "kty" in document else document["keys"]
    except (ValueError, KeyError, TypeError) as err:
        raise AccessConfigError(f"{path} is not a JWK Set ({type(err).__name__})") from None
    if not isinstance(entries, list):
        raise AccessConfigError(f"{path} is not a JWK Set (keys is not a list)")
    keys: dict[str, ECKey] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise AccessConfigError(f"{path}: key {n} is not a JSON object")
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AccessConfigError(f"{path}: key {n} has no kid")
        if "d" in entry:
            raise AccessConfigError(f"{path}: key {kid} is a private key; give the public one")
        if entry.get("kty") != "EC" or entry.get("crv") != TOKEN_CURVE:
            raise AccessConfigError(f"{path}: key {kid} is not an EC {TOKEN_CURVE} key")
        if entry.get("alg", TOKEN_ALG) != TOKEN_ALG or entry.get("use", "sig") != "sig":
            raise AccessConfigError(f"{path}: key {kid} is not an {TOKEN_ALG} signing key")
        if kid in keys:
            raise AccessConfigError(f"{path}: kid {kid} appears twice")
        try:
            keys[kid] = ECKey.import_key(entry)
        except (JoseError, ValueError, TypeError) as err:
            raise AccessConfigError(f"{path}: key {kid} cannot be read: {err}") from None
    if not keys:
        raise AccessWithdrawn(f"{path} holds no key")
    return keys


class PortalKeys:
    """The clearance portal's public signing keys (a JWKS file), re-read when it changes:
    publishing a new ``kid`` rotates, removing one retires it, without a restart."""

    def __init__(self, path: Path, *, check_every_s: float = 1.0) -> None:
        self._file = _WatchedFile(path, _parse_portal_jwks, check_every_s=check_every_s)

    def key(self, kid: str) -> ECKey | None:
        keys: dict[str, ECKey] = self._file.current()
        return keys.get(kid)


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a trader token must say (``GUN_HUB_WEB__*``)."""

    issuer: str
    audience: str
    max_lifetime_s: int = 900
    clock_skew_s: int = 60


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unauthenticated("claims", f"claim {name} missing or not a number")
    if not math.isfinite(value):
        raise Unauthenticated("claims", f"claim {name} is not finite")
    return float(value)


def _granted(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: its ``scope`` claim, space-separated names (RFC 8693
    section 4.2, RFC 6749 section 3.3). Anything else (a list, a tab, a space too many)
    grants nothing: read loosely, a portal's mistake would widen what a token allows."""
    scope = claims.get("scope")
    if not isinstance(scope, str) or not _SCOPE.fullmatch(scope):
        return frozenset()
    return frozenset(scope.split(" "))


class TraderTokens:
    """Verifies a trader's token and says which EORI it speaks for.

    Order (as for the envelope, docs/security.md): size and shape; the header's algorithm
    is ES256 and its ``kid`` is a portal key (never a key or algorithm the token brings
    along); the signature; then issuer, audience, subject and times.
    """

    def __init__(
        self, keys: PortalKeys, policy: TokenPolicy, *, clock: Callable[[], float] = _now
    ) -> None:
        self._keys = keys
        self._policy = policy
        self._clock = clock

    def verify(self, token: str, *, scope: str | None = None) -> str:
        """The EORI the token names, or :class:`Unauthenticated`; with ``scope``, only if
        the token grants it too (reason ``scope``, checked last: a token refused for
        anything else says that)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("malformed", f"token of {len(token)} bytes")
        try:
            compact = jws.extract_compact(token.encode("ascii"))
        except (JoseError, ValueError, UnicodeError) as err:
            raise Unauthenticated(
                "malformed", f"not a compact JWS ({type(err).__name__})"
            ) from None
        header = compact.headers()
        if not isinstance(header, dict):
            # joserfc checks only that "alg" is in it: a JSON list or string holding
            # "alg" passed, and header.get raised (a 500; review of stop 55).
            raise Unauthenticated("malformed", "its protected header is no JSON object")
        if header.get("alg") != TOKEN_ALG:
            raise Unauthenticated("algorithm", f"algorithm {str(header.get('alg'))[:20]!r}")
        if "crit" in header:
            raise Unauthenticated("malformed", "critical header parameters are not supported")
        kid = header.get("kid")
        key = self._keys.key(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthenticated("unknown_key", f"kid {str(kid)[:80]!r} is no portal key")
        try:
            verified = jwt.decode(token, key, algorithms=[TOKEN_ALG])
        except (JoseError, ValueError) as err:
            raise Unauthenticated(
                "signature", f"signature not verified ({type(err).__name__})"
            ) from None
        subject = self._subject(verified.claims)
        if scope is not None and scope not in _granted(verified.claims):
            raise Unauthenticated("scope", f"the token does not grant {scope}")
        return subject

    def _subject(self, claims: Mapping[str, Any]) -> str:
        policy = self._policy
        if claims.get("iss") != policy.issuer:
            raise Unauthenticated("claims", "issuer is not the portal")
        # A text, or an array naming the hub alone (as the envelope's ``aud``): a token
        # the portal issued for several services could be replayed here by any of them.
        audience = claims.get("aud")
        if audience != policy.audience and audience != [policy.audience]:
            raise Unauthenticated("claims", "the token is not for the hub alone")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not EORI.fullmatch(subject):
            raise Unauthenticated("claims", "the subject is not an EORI number")
        now = self._clock()
        skew = policy.clock_skew_s
        issued, expires = _numeric_date(claims, "iat"), _numeric_date(claims, "exp")
        if expires <= now - skew:
            raise Unauthenticated("expired", "the token has expired")
        if issued > now + skew:
            raise Unauthenticated("claims", "the token is issued in the future")
        if expires - issued > policy.max_lifetime_s:
            raise Unauthenticated("claims", f"a lifetime beyond {policy.max_lifetime_s}s")
        if "nbf" in claims and _numeric_date(claims, "nbf") > now + skew:
            raise Unauthenticated("claims", "the token is not valid yet")
        return subject


# What a refused trader reads: sentences, no secret (S105 goes by the names).
REFUSED_TOKEN = "a valid portal token is required"  # noqa: S105
EXPIRED_TOKEN = "the portal token has expired: ask the portal for another"  # noqa: S105


def token_refusal(refused: Unauthenticated) -> str:
    """What a refused trader is told: that its token has expired, when it has (the dates
    are read only once the portal's signature is verified, so this is said of the
    trader's own token only and tells a forger nothing), and nothing more otherwise
    (review stop 39-O, O8)."""
    return EXPIRED_TOKEN if refused.reason == "expired" else REFUSED_TOKEN


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or :class:`Unauthenticated`."""
    if not authorization:
        raise Unauthenticated("missing", "no Authorization header")
    found = _BEARER.fullmatch(authorization.strip())
    if found is None:
        raise Unauthenticated("malformed", "not a Bearer compact JWS")
    return found.group(1)


def generate_portal_key(directory: Path) -> tuple[Path, Path]:
    """A new portal signing key (for local runs and tests: the real portal makes its own):
    ``portal.jwk`` (private, mode 0600) and ``portal-jwks.json`` (public, for the hub).
    An existing private key gets a new one beside it: both are published, the newest
    signs."""
    private_path, public_path = directory / "portal.jwk", directory / "portal-jwks.json"
    kid = f"portal-sig-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    key = ECKey.generate_key(
        TOKEN_CURVE, parameters={"kid": kid, "use": "sig", "alg": TOKEN_ALG}, private=True
    )
    published: list[dict[str, Any]] = []
    if public_path.exists():
        published = json.loads(public_path.read_text())["keys"]
    write_private_file(private_path, json.dumps(key.as_dict(private=True)) + "\n")
    public = key.as_dict(private=False)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.write_text(json.dumps({"keys": [public, *published]}, indent=2) + "\n")
    return private_path, public_path


def load_portal_key(path: Path) -> ECKey:
    """A portal's private signing key written by :func:`generate_portal_key`."""
    refuse_if_shared(path, AccessConfigError)
    try:
        key = ECKey.import_key(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, JoseError) as err:
        raise AccessConfigError(f"{path} is no private EC key ({type(err).__name__})") from None
    if not key.is_private or key.kid is None:
        raise AccessConfigError(f"{path} is no private key with a kid")
    return key


def issue_trader_token(
    key: ECKey,
    eori: str,
    *,
    issuer: str,
    audience: str,
    lifetime_s: int = 300,
    now: float | None = None,
    scope: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """What the portal gives a trader it has authenticated: the hub accepts it until it
    expires, for this EORI's declarations only; to lodge as well, ``scope`` holds the
    gateway's lodging scope (``GUN_HUB_GATEWAY__LODGING_SCOPE``, ``gun:lodge``)."""
    issued = int(_now() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": eori,
        "iat": issued,
        "exp": issued + lifetime_s,
        "jti": secrets.token_urlsafe(12),
    }
    if scope is not None:
        claims["scope"] = scope
    claims.update(extra or {})
    return jwt.encode({"alg": TOKEN_ALG, "kid": key.kid}, claims, key, algorithms=[TOKEN_ALG])


# -- officers: names and scrypt hashes -----------------------------------------------------

_SCHEME = "scrypt"
# scrypt cost: 2^15 x 8 x 1 takes 32 MiB and about 0.1-0.2 s here; the hub caches a
# successful check for a minute so a dashboard polling every second costs one per minute.
_N, _R, _P = 2**15, 8, 1
# Addresses whose recent failures the officer gate keeps (the oldest forgotten first).
_ADDRESSES_KEPT = 4096
_KEY_BYTES = 32


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 1024 * 1024, dklen=_KEY_BYTES
    )


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """``scrypt$n$r$p$salt$hash`` (URL-safe base64): what an officers file holds."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password.encode(), salt, n, r, p)
    return f"{_SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time comparison). Slow on
    purpose: call it off the event loop."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = _unb64(digest)
        found = _scrypt(password.encode(), _unb64(salt), int(n), int(r), int(p))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(found, expected)


def _parse_officers(data: bytes, path: Path) -> dict[str, str]:
    officers: dict[str, str] = {}
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        if not sep or not OFFICER_NAME.fullmatch(name):
            raise AccessConfigError(f"{path} line {number}: expected NAME:scrypt$...")
        if not encoded.startswith(f"{_SCHEME}$") or encoded.count("$") != 5:
            raise AccessConfigError(f"{path} line {number}: {name} has no scrypt hash")
        officers[name] = encoded
    return officers


def add_officer(path: Path, name: str, password: str) -> None:
    """Add an officer to an officers file (or give it a new password); mode 0600."""
    if not OFFICER_NAME.fullmatch(name):
        raise AccessConfigError(f"officer name must match {OFFICER_NAME.pattern}")
    if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AccessConfigError("a password of 1 to 1024 bytes is needed")
    lines = path.read_text().splitlines() if path.exists() else []
    kept = [line for line in lines if line.partition(":")[0].strip() != name]
    write_private_file(path, "\n".join([*kept, f"{name}:{hash_password(password)}"]) + "\n")


def write_officer_credentials(path: Path, name: str, password: str) -> None:
    """The file ``gun-hub status|stats --credentials-file`` reads: ``NAME:PASSWORD``,
    mode 0600 (it holds a password: keep it out of any repository)."""
    write_private_file(path, f"{name}:{password}\n")


def read_officer_credentials(path: Path) -> tuple[str, str]:
    """``(name, password)`` from a credentials file, refused if others may read it."""
    try:
        refuse_if_shared(path, AccessConfigError)
        name, sep, password = path.read_text().strip().partition(":")
    except OSError as err:
        raise AccessConfigError(f"cannot read {path}: {err.strerror}") from None
    if not sep or not OFFICER_NAME.fullmatch(name) or not password:
        raise AccessConfigError(f"{path}: expected one line NAME:PASSWORD")
    return name, password


def basic_authorization(name: str, password: str) -> str:
    """The ``Authorization`` header value for an officer."""
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def basic_credentials(authorization: str | None) -> tuple[str, str]:
    """``(name, password)`` of an ``Authorization: Basic`` header, or
    :class:`Unauthenticated`."""
    if not authorization:
        raise Unauthenticated("missing", "no Authorization header")
    found = _BASIC.fullmatch(authorization.strip())
    if found is None:
        raise Unauthenticated("malformed", "not Basic credentials")
    try:
        decoded = base64.b64decode(found.group(1), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        raise Unauthenticated("malformed", "Basic credentials not base64 UTF-8") from None
    name, sep, password = decoded.partition(":")
    if not sep or not OFFICER_NAME.fullmatch(name) or not password:
        raise Unauthenticated("malformed", "Basic credentials without a name and a password")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise Unauthenticated("malformed", "password too long")
    return name, password


@dataclass
class OfficerGate:
    """Checks officers' credentials against an officers file, off the event loop.

    A scrypt check takes a large fraction of a second of CPU: at most ``max_checks`` run
    at once, more waiting are refused as busy, and a successful check is remembered for
    ``remember_s`` (under a keyed hash: no password is kept). An unknown name costs as
    much as a wrong password, so names cannot be probed by timing.

    After a failed check, the client's address is refused at once, without a check
    ("throttled"), for ``backoff_base_s`` doubling with each failure in a row up to
    ``backoff_cap_s``: one address cannot keep the checks busy (officers without a
    remembered sign-in would get "busy") nor guess at the CPU's pace. A remembered
    officer is never held, nor is another address. One check at a time per address, and
    the requests of one sign-in made meanwhile (a page's) share its check. Behind a
    reverse proxy the address is the proxy's: every failure behind it holds everyone's new
    sign-ins, doubling, unless the proxy is trusted to name the client
    (``web.trusted_proxies``, security/client_address.py). An IPv6 client is held by its
    /64 network.
    """

    path: Path
    remember_s: float = 60.0
    max_checks: int = 2
    max_waiting: int = 16
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _file: _WatchedFile = field(init=False)
    _remembered: OrderedDict[bytes, float] = field(init=False, default_factory=OrderedDict)
    _secret: bytes = field(init=False, default_factory=lambda: secrets.token_bytes(32))
    _waiting: int = field(init=False, default=0)
    _checks: asyncio.Semaphore | None = field(init=False, default=None)
    _decoy: str = field(init=False, default_factory=lambda: hash_password(secrets.token_hex(8)))
    # Per address: failures in a row, and until when it is refused without a check.
    _failures: OrderedDict[str, tuple[int, float]] = field(init=False, default_factory=OrderedDict)
    # Checks under way: by sign-in (shared), and the addresses they come from (one each).
    _in_flight: dict[bytes, asyncio.Future[bool]] = field(init=False, default_factory=dict)
    _checking: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        # Whoever reads the hashes can guess passwords offline, past every wait below.
        self._file = _WatchedFile(self.path, _parse_officers, private=True)

    def _known(self) -> dict[str, str]:
        officers: dict[str, str] = self._file.current()
        return officers

    def _check(self, name: str, password: str) -> bool:
        encoded = self._known().get(name)
        ok = check_password(password, encoded if encoded is not None else self._decoy)
        return ok and encoded is not None

    async def _checked(self, memo: bytes, client: str | None, name: str, password: str) -> bool:
        """One scrypt check, shared by every request of the same sign-in meanwhile."""
        if self._checks is None:
            self._checks = asyncio.Semaphore(self.max_checks)
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_flight[memo] = outcome
        if client is not None:
            self._checking.add(client)
        self._waiting += 1
        try:
            async with self._checks:
                ok = await asyncio.to_thread(self._check, name, password)
        except asyncio.CancelledError:
            outcome.cancel()  # those sharing it ask again
            raise
        except Exception as error:
            outcome.set_exception(error)
            outcome.exception()  # retrieved: nobody else may be waiting for it
            raise
        else:
            outcome.set_result(ok)
        finally:
            self._waiting -= 1
            del self._in_flight[memo]
            if client is not None:
                self._checking.discard(client)
        return ok

    def retry_after(self, client: str | None) -> float:
        """Seconds until ``client`` is checked again (0: now)."""
        if client is None:
            return 0.0
        failed = self._failures.get(ClientAddresses.held_as(client))
        return 0.0 if failed is None else max(0.0, failed[1] - self.clock())

    def _failed(self, client: str | None, now: float) -> None:
        if client is None:
            return
        failures, until = self._failures.pop(client, (0, now))
        if now - until > self.backoff_cap_s:
            failures = 0  # quiet for longer than the longest wait: a typo, not a flood
        failures += 1
        wait = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failures - 1))
        self._failures[client] = (failures, now + wait)
        while len(self._failures) > _ADDRESSES_KEPT:
            self._failures.popitem(last=False)

    async def verify(self, authorization: str | None, client: str | None = None) -> str:
        """The officer's name, or :class:`Unauthenticated` (``busy`` when too many
        checks wait: the caller answers 503; ``throttled`` while ``client``, the
        address, waits after a failure: 429, ``retry_after``)."""
        name, password = basic_credentials(authorization)
        if client is not None:
            client = ClientAddresses.held_as(client)  # one IPv6 /64 is one client
        encoded = self._known().get(name, "")
        memo = hmac.new(self._secret, f"{name}\0{password}\0{encoded}".encode(), "sha256").digest()
        now = self.clock()
        until = self._remembered.get(memo)
        if until is not None and until > now:
            return name
        same = self._in_flight.get(memo)
        if same is not None:  # the same sign-in already being checked (a page's requests)
            if not await asyncio.shield(same):  # its failure counted once, by its check
                raise Unauthenticated("password", f"officer {name!r} not authenticated")
            ok = True
        else:
            if self.retry_after(client) > 0:
                raise Unauthenticated("throttled", "wrong credentials from this address just now")
            if client is not None and client in self._checking:
                raise Unauthenticated("throttled", "one sign-in checked at a time per address")
            if self._waiting >= self.max_waiting:
                raise Unauthenticated("busy", "too many credential checks waiting")
            ok = await self._checked(memo, client, name, password)
        if not ok:
            self._failed(client, self.clock())
            raise Unauthenticated("password", f"officer {name!r} not authenticated")
        if client is not None:
            self._failures.pop(client, None)
        self._remembered[memo] = now + self.remember_s
        while len(self._remembered) > 1024:  # a small, bounded memory
            self._remembered.popitem(last=False)
        return name


# -- local runs and tests ------------------------------------------------------------------


@dataclass(frozen=True)
class LocalAccess:
    """A portal key and an officer made on the spot, for local runs, the demo and tests:
    what a deployment gets from the real portal and its officers instead."""

    directory: Path
    portal_key: ECKey
    portal_jwks: Path
    officers_file: Path
    officer: str
    password: str
    credentials_file: Path
    issuer: str = "clearance-portal"
    audience: str = "gun-hub"

    @classmethod
    def create(cls, directory: Path, officer: str = "officer") -> LocalAccess:
        private, public = generate_portal_key(directory / "portal")
        password = secrets.token_urlsafe(18)
        officers, credentials = directory / "officers", directory / f"{officer}.credentials"
        add_officer(officers, officer, password)
        write_officer_credentials(credentials, officer, password)
        return cls(
            directory, load_portal_key(private), public, officers, officer, password, credentials
        )

    def env(self, trader_port: int, officer_port: int) -> dict[str, str]:
        """The hub's ``GUN_HUB_WEB__*`` settings for both listeners."""
        return {
            "GUN_HUB_WEB__TRADER_PORT": str(trader_port),
            "GUN_HUB_WEB__OFFICER_PORT": str(officer_port),
            "GUN_HUB_WEB__PORTAL_JWKS": str(self.portal_jwks),
            "GUN_HUB_WEB__PORTAL_ISSUER": self.issuer,
            "GUN_HUB_WEB__TOKEN_AUDIENCE": self.audience,
            "GUN_HUB_WEB__OFFICERS_FILE": str(self.officers_file),
        }

    def trader_token(self, eori: str, lifetime_s: int = 300, *, lodging: bool = False) -> str:
        """A lookup token; with ``lodging``, one that lodges over HTTP too."""
        return issue_trader_token(
            self.portal_key,
            eori,
            issuer=self.issuer,
            audience=self.audience,
            lifetime_s=lifetime_s,
            scope=DEFAULT_LODGING_SCOPE if lodging else None,
        )

    def trader_authorization(self, eori: str) -> str:
        """For the trader lookup."""
        return f"Bearer {self.trader_token(eori)}"

    def lodging_authorization(self, eori: str) -> str:
        """For ``POST /declarations`` of the gateway (the ``gun:lodge`` scope)."""
        return f"Bearer {self.trader_token(eori, lodging=True)}"

    def officer_authorization(self) -> str:
        return basic_authorization(self.officer, self.password)

    def token_file(self, eori: str) -> Path:
        """A file holding a fresh token for ``eori`` (``gun-hub status --token-file``)."""
        path = self.directory / f"{eori}.token"
        write_private_file(path, self.trader_token(eori) + "\n")
        return path
