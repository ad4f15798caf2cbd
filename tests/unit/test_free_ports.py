"""``free_port`` (gun_tools/processes.py): ports asked for in a row are distinct.

A test fixture asked for a trader port and an officer port one after the other, before
either was listened on, and the OS gave the same port twice: the hub refused to start
("GUN_HUB_WEB__TRADER_PORT and __OFFICER_PORT must differ", CI on c1d2221)."""

from __future__ import annotations

from gun_tools.processes import free_port


def test_ports_asked_for_in_a_row_are_never_the_same() -> None:
    # Over the ~28,000 ephemeral ports, 1,000 picks repeat one almost surely by chance.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
