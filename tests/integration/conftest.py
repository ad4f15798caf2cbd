"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.partner_fixtures import RunningPartner, running_partner


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    """The simulated TRACES with the sample DGAL documents, over real HTTP."""
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as p:
        yield p
