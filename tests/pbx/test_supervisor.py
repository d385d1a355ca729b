"""The reconnect loop both links share, seen from the AMI link (tests/pbx/test_link.py covers
the ARI link's backoff resets): same backoff, the AMI's own words in the log."""

from __future__ import annotations

import asyncio
import logging

from astcti.pbx import supervisor
from astcti.pbx.ami import AmiError, AmiLink
from astcti.pbx.linkconfig import AmiLinkConfig


async def test_ami_connect_failures_back_off_and_are_logged_once(monkeypatch, caplog) -> None:
    ami = AmiLink(AmiLinkConfig("acti_amilink_99", "127.0.0.1", 1, "u", "s"))
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        await real_sleep(0)

    async def refuse() -> None:
        raise AmiError("acti_amilink_99: cannot reach AMI at 127.0.0.1:1")

    monkeypatch.setattr(supervisor.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(supervisor.random, "uniform", lambda a, b: 1.0)
    ami._connect = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="astcti.pbx.ami"):
        ami.start()
        while len(delays) < 6:
            await real_sleep(0)
        await ami.stop()
    assert delays[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert not ami.up and ami.last_error == "acti_amilink_99: cannot reach AMI at 127.0.0.1:1"
    downs = [r.getMessage() for r in caplog.records if r.name == "astcti.pbx.ami"]
    assert downs == ["acti_amilink_99: AMI down: acti_amilink_99: cannot reach AMI at"
                     " 127.0.0.1:1; retrying"]  # the same reason again is not logged again
    assert not await ami.wait_up(0.01)
