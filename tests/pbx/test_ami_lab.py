"""AmiLink against the lab's real Asterisk: login, queue reads and events, least privilege,
Redirect errors, reconnect after a cut and a stall, bad credentials."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from astcti.pbx.ami import AmiError, AmiLink
from astcti.pbx.linkconfig import AmiLinkConfig
from tests.lab import Lab
from tests.lab.proxy import FaultyProxy
from tests.pbx.helpers import until

pytestmark = pytest.mark.lab


def _config(lab: Lab, *, secret: str | None = None, port: int | None = None) -> AmiLinkConfig:
    c = lab.config
    return AmiLinkConfig("acti_amilink_99", "127.0.0.1", port or c.ami_port, c.ami_user,
                         c.ami_secret if secret is None else secret)


async def test_queue_reads_and_queue_events(lab: Lab) -> None:
    events: list[dict] = []
    ami = AmiLink(_config(lab), heartbeat=2)
    ami.on("QueueMember*", lambda _l, e: events.append(e))
    ami.start()
    try:
        assert await ami.wait_up(10), ami.last_error
        assert ami.version  # the AMI protocol version of Asterisk's banner
        summary = await ami.queue_summary(lab.config.queue)
        assert [s["Queue"] for s in summary] == [lab.config.queue]
        lab.rx(f"queue add member PJSIP/103 to {lab.config.queue}")
        await until(lambda: any(e["Event"] == "QueueMemberAdded" for e in events))
        added = next(e for e in events if e["Event"] == "QueueMemberAdded")
        assert added["Queue"] == lab.config.queue and added["Interface"] == "PJSIP/103"
        status = await ami.queue_status(lab.config.queue)
        assert {e["Event"] for e in status} == {"QueueParams", "QueueMember"}
        assert [e["Location"] for e in status if e["Event"] == "QueueMember"] == ["PJSIP/103"]
        assert await ami.queue_status("no-such-queue") == []
    finally:
        lab.rx(f"queue remove member PJSIP/103 from {lab.config.queue}")
        await ami.stop()


async def test_least_privilege_and_clear_errors(lab: Lab) -> None:
    """The lab's user can Redirect (write=call) and read queues, nothing else."""
    ami = AmiLink(_config(lab), heartbeat=2)
    ami.start()
    try:
        assert await ami.wait_up(10), ami.last_error
        for action, fields in [("Originate", {"Channel": "Local/1@x", "Application": "Wait"}),
                               ("Command", {"Command": "core show version"}),
                               ("QueueAdd", {"Queue": "support", "Interface": "PJSIP/104"})]:
            with pytest.raises(AmiError, match=f"AMI {action} failed: Permission denied"):
                await ami.action(action, **fields)
        with pytest.raises(AmiError, match="Redirect failed: Channel does not exist"):
            await ami.redirect("PJSIP/101-00000000", "astcti-adopt", "s",
                               extra_channel="PJSIP/trunk-00000000")
        assert ami.up  # a refused action does not cost the connection
    finally:
        await ami.stop()


async def test_reconnects_after_a_cut_and_a_stall(lab: Lab) -> None:
    proxy = await FaultyProxy(lab.config.ami_port).start()
    ups: list[float] = []

    async def on_up(_ami: AmiLink) -> None:
        ups.append(time.monotonic())

    ami = AmiLink(_config(lab, port=proxy.port), heartbeat=1)
    ami.up_hooks.append(on_up)
    ami.start()
    try:
        assert await ami.wait_up(10), ami.last_error
        proxy.drop()  # Asterisk gone for astcti: down, then back by itself
        await until(lambda: not ami.up)
        assert "closed" in (ami.last_error or "")
        await until(lambda: ami.up)
        assert len(ups) == 2
        proxy.stall()  # a silent cut: only the unanswered ping tells
        pending = asyncio.ensure_future(ami.action("Ping", timeout=30))
        await until(lambda: not ami.up)
        assert "did not answer a ping" in (ami.last_error or "")
        with pytest.raises(AmiError, match="connection lost before Asterisk answered"):
            await pending  # failed at once, not resent on the next connection
        proxy.heal()
        await until(lambda: ami.up)
        assert (await ami.action("Ping"))["Ping"] == "Pong"
    finally:
        await ami.stop()
        await proxy.close()


async def test_wrong_secret_and_unreachable_are_reported_not_raised(lab: Lab) -> None:
    wrong = AmiLink(_config(lab, secret="wrong-secret"), heartbeat=2)
    nobody = AmiLink(_config(lab, port=1), heartbeat=2)
    wrong.start()
    nobody.start()
    try:
        assert not await wrong.wait_up(3)
        assert "rejected AMI user 'astcti'" in (wrong.last_error or "")
        assert "wrong-secret" not in (wrong.last_error or "")
        with pytest.raises(AmiError, match="AMI is not connected"):
            await wrong.action("Ping")
        assert not await nobody.wait_up(1)
        assert "cannot reach AMI at 127.0.0.1:1" in (nobody.last_error or "")
    finally:
        await wrong.stop()
        await nobody.stop()


def test_lab_daemon_connected_to_ami(lab: Lab) -> None:
    text = Path(lab.config.astcti_log).read_text()
    assert "acti_amilink_01: AMI connected at 127.0.0.1:" in text
    assert lab.config.ami_secret not in text
