"""Shared fixtures. The lab (real Asterisk + astcti + SIPp) is started once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.harness import Lab, LabConfig, LabError


def _session_lab(the_lab: Lab) -> Iterator[Lab]:
    """Start a session's lab without phones and stop it at the end (kept with
    ASTCTI_KEEP_LAB, to look at it after a failure)."""
    the_lab.up(phones="none")
    try:
        yield the_lab
    finally:
        if not os.environ.get("ASTCTI_KEEP_LAB"):
            the_lab.down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab, phones left to each test (`lab.start_phone`)."""
    if Lab.running() is not None:
        raise LabError("a lab started by `make lab` is running; the tests need their own:"
                       " `make lab-down` first")
    yield from _session_lab(Lab(log=lambda msg: print(msg)))


@pytest.fixture(scope="session")
def freepbx_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab whose Asterisk runs FreePBX 17's dialplan (asterisk-conf/freepbx-lab), astcti's
    blocks only in the *_custom.conf files an admin edits; beside the session's plain lab
    (ports + FREEPBX_SHIFT), started on first use. With ASTCTI_LAB_FLAVOUR=freepbx the session's
    `lab` is already one."""
    if os.environ.get("ASTCTI_LAB_FLAVOUR") == "freepbx":
        yield request.getfixturevalue("lab")
        return
    config = LabConfig.from_env("freepbx", beside=True)
    if Lab.running(Path(config.lab_dir)) is not None:
        raise LabError(f"a FreePBX-flavour lab is still running in {config.lab_dir}:"
                       " `make lab-down` first")
    yield from _session_lab(Lab(config, log=lambda msg: print(msg)))


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
