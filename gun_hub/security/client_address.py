"""Whose request it is: the address a listener holds a wrong password against.

Behind a reverse proxy every request comes from the proxy's address, so one officer's
wrong password held every officer's new sign-in (found by review in stop 31). A proxy
named in ``web.trusted_proxies`` is believed about the address it got the request from:
``X-Forwarded-For`` read from the right, past the addresses of trusted proxies (each
appends the one it got the request from), the first address no trusted proxy has is the
client. What is left of it was written by the client itself, and anyone else's header is
ignored: a guesser would name a new address at each guess.

One IPv6 network of 64 bits is one subscriber's (RFC 6177): its addresses are held as one,
or a guesser would take a new address for each guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ClientAddresses:
    trusted: tuple[_Network, ...] = ()

    @classmethod
    def parse(cls, listed: str) -> ClientAddresses:
        """From ``web.trusted_proxies``: addresses and networks, comma-separated."""
        trusted = []
        for item in (i.strip() for i in listed.split(",")):
            if not item:
                continue
            try:
                trusted.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(
                    f"web.trusted_proxies: {item!r} is not an address or a network"
                ) from None
        return cls(tuple(trusted))

    def client(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The client's address, from the connection's ``peer`` and the request's
        ``X-Forwarded-For`` headers (believed only as far as trusted proxies vouch)."""
        if peer is None:
            return None
        client = peer
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        while self._trusted(client) and hops:
            hop = hops.pop()
            if _address(hop) is None:
                break  # not written by a proxy that vouches for it
            client = hop
        return client

    def _trusted(self, address: str) -> bool:
        parsed = _address(address)
        return parsed is not None and any(parsed in network for network in self.trusted)

    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` is a trusted proxy's: a listener does not hold it to one
        client's share of connections (listeners.py)."""
        return self._trusted(address)

    @staticmethod
    def held_as(address: str) -> str:
        """What ``address`` is held as after a wrong password: its /64 network for IPv6."""
        parsed = _address(address)
        if parsed is None:
            return address
        if isinstance(parsed, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((parsed, 64), strict=False))
        return str(parsed)  # an IPv4 client of a dual-stack listener included


def _address(text: str) -> _Address | None:
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


PEERS_ONLY = ClientAddresses()  # no proxy trusted: the connection's address is the client's
