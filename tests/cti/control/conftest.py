"""Stop the fake PBX rigs' event feeders after each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.cti.control.fakepbx import Rig


@pytest.fixture(autouse=True)
async def _stop_rigs() -> AsyncIterator[None]:
    yield
    while Rig.running:
        feeder = Rig.running.pop()
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
