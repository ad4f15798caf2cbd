"""``/stats?to=0001-01-01`` (any ``to`` in the first month of year 1, ``from`` not
given) is an ISO date ``day()`` accepts; the officer listener then takes ``from`` as
``to`` minus ``stats_default_days - 1`` days (gun_hub/web/officer.py, ``stats``), and
``date - timedelta`` raises OverflowError ("date value out of range"). Nothing catches
it: the officer reads a 500, not a 400 saying the range is out of the calendar."""

from __future__ import annotations

import pytest

from tests.unit.test_web_listeners import Hub, get, hub, view  # noqa: F401 - fixtures


@pytest.mark.asyncio
@pytest.mark.parametrize("to", ["0001-01-01", "0001-01-15"])
async def test_a_to_day_whose_default_range_starts_before_year_1_is_a_400(
    hub: Hub,  # noqa: F811
    to: str,
) -> None:
    code, _, _ = await get(f"{hub.officer_url}/stats?to={to}", hub.officer)
    assert code == 400
