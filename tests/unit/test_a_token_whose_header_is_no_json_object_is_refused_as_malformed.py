"""A bearer token whose protected header decodes to JSON that is no object
(``["alg"]``, ``"alg"``: any text holding "alg") passes joserfc's
``jws.extract_compact``, which only checks ``"alg" in header``; ``TraderTokens.verify``
(gun_hub/security/web_auth.py) then calls ``header.get("alg")`` on a list or a str and
raises AttributeError. Neither the trader listener nor the lodging gateway catches more
than ``Unauthenticated``: anyone, with no key, gets a 500 (and a traceback logged per
request) where a 401 is due."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gun_hub.security.web_auth import (
    PortalKeys,
    TokenPolicy,
    TraderTokens,
    Unauthenticated,
    generate_portal_key,
)

POLICY = TokenPolicy(issuer="clearance-portal", audience="gun-hub", max_lifetime_s=900)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("header", [b'["alg"]', b'"alg"', b'"ES256 alg"'])
def test_a_header_that_is_no_object_is_a_malformed_token(tmp_path: Path, header: bytes) -> None:
    _, public = generate_portal_key(tmp_path / "portal")
    tokens = TraderTokens(PortalKeys(public), POLICY)
    forged = f"{_b64(header)}.{_b64(b'{}')}.{_b64(b'signature')}"
    with pytest.raises(Unauthenticated):
        tokens.verify(forged)


from tests.unit.test_web_listeners import MINE, Hub, get, hub, view  # noqa: E402,F401


@pytest.mark.asyncio
async def test_the_trader_listener_answers_such_a_token_with_a_401(hub: Hub) -> None:  # noqa: F811
    header = b'["alg"]'
    forged = f"{_b64(header)}.{_b64(b'{}')}.{_b64(b'signature')}"
    code, _, _ = await get(f"{hub.trader_url}/declarations/{MINE}", f"Bearer {forged}")
    assert code == 401
