"""Shared fixtures. The lab (real Asterisk + astcti + SIPp) is started once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.lab.harness import Lab, LabError


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab, phones left to each test (`lab.start_phone`)."""
    if Lab.running() is not None:
        raise LabError("a lab started by `make lab` is running; the tests need their own:"
                       " `make lab-down` first")
    the_lab = Lab(log=lambda msg: print(msg))
    the_lab.up(phones="none")
    try:
        yield the_lab
    finally:
        if not os.environ.get("ASTCTI_KEEP_LAB"):
            the_lab.down()


@pytest.fixture
def phones(lab: Lab) -> Iterator[Lab]:
    """Auto-answering phones on 101-104 for one test, stopped afterwards."""
    lab.start_phones()
    try:
        yield lab
    finally:
        for ext in list(lab.phones):
            lab.stop_phone(ext)


@pytest.fixture
def clean_asterisk(lab: Lab) -> Iterator[Lab]:
    """Fails the test if it leaves a channel or a bridge in Asterisk (then cleans up anyway)."""
    from tests.lab.ari import force_clean, wait_clean

    force_clean(lab)
    yield lab
    try:
        wait_clean(lab)
    finally:
        force_clean(lab)


@pytest.fixture
async def cti(lab: Lab):
    """A logged-in WebSocket client of the lab's astcti (closed after the test)."""
    from astcti.client import CtiClient

    clients: list[CtiClient] = []

    async def connect(login: bool = True) -> CtiClient:
        c = lab.config
        client = await CtiClient.websocket(c.ws_url, c.astcti_user if login else None,
                                           c.astcti_password if login else None)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()
