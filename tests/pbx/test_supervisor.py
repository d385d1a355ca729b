"""The reconnect loop both links share, seen from the AMI link (tests/pbx/test_link.py covers
the ARI link's backoff resets): same backoff, the AMI's own words in the log."""

from __future__ import annotations

import logging

from astcti.pbx.ami import AmiError, AmiLink
from astcti.pbx.linkconfig import AmiLinkConfig
from tests.pbx.helpers import Backoff


async def test_ami_connect_failures_back_off_and_are_logged_once(monkeypatch, caplog) -> None:
    ami = AmiLink(AmiLinkConfig("acti_amilink_99", "127.0.0.1", 1, "u", "s"))
    backoff = Backoff(monkeypatch)

    async def refuse() -> None:
        raise AmiError("acti_amilink_99: cannot reach AMI at 127.0.0.1:1")

    ami._connect = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="astcti.pbx.ami"):
        ami.start()
        delays = await backoff.until(6)
        await ami.stop()
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0]
    assert not ami.up and ami.last_error == "acti_amilink_99: cannot reach AMI at 127.0.0.1:1"
    downs = [r.getMessage() for r in caplog.records if r.name == "astcti.pbx.ami"]
    assert downs == ["acti_amilink_99: AMI down: acti_amilink_99: cannot reach AMI at"
                     " 127.0.0.1:1; retrying"]  # the same reason again is not logged again
    assert not await ami.wait_up(0.01)
