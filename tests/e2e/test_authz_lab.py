"""Users bound to extensions and the dial policy, with real calls in the lab: an agent acts on
its own extension only, a supervisor watches others, a refused number never reaches Asterisk,
and the administrator's changes apply to live connections."""

from __future__ import annotations

import re
import secrets

import pytest

from astcti.client import CtiClient, CtiError
from tests.admin.conftest import run_shell
from tests.lab import Lab
from tests.lab.ari import ChannelWatch, wait_for
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab

AGENT = Phone(answer_after_ms=300, auto_answer=True)


def _shell(lab: Lab, command: str, stdin: str = "") -> str:
    out = run_shell("--socket", lab.config.admin_socket, "-c", command, stdin=stdin)
    assert out.returncode == 0 and "Traceback" not in out.stderr, (out.stdout, out.stderr)
    return out.stdout


async def test_agent_and_supervisor_rights_with_real_calls(lab: Lab, clean_asterisk) -> None:
    password = secrets.token_urlsafe(12)
    alice, sam = f"alice{secrets.token_hex(3)}", f"sam{secrets.token_hex(3)}"
    _shell(lab, f"add user {alice} agent 101", stdin=f"{password}\n")
    _shell(lab, f"add user {sam} supervisor 103", stdin=f"{password}\n")
    lab.start_phone("101", AGENT)
    lab.start_phone("102", AGENT)
    agent = await CtiClient.websocket(lab.config.ws_url, alice, password)
    supervisor = await CtiClient.tcp("127.0.0.1", lab.config.tcp_port, sam, password)
    try:
        await agent.request("startmonitor", extension="101")
        with pytest.raises(CtiError, match=f"^not allowed: user {alice} may not act on"
                                           " extension 102$"):
            await agent.request("startmonitor", extension="102")
        await supervisor.request("startmonitor", extension="102")  # watches anyone

        async with ChannelWatch(lab) as watch:
            with pytest.raises(CtiError) as refused:
                await agent.request("makecall", extension="101", destination="0044201234567")
            assert refused.value.reply["error"] == (
                f"not allowed: user {alice} (role agent) may not dial 0044201234567: add"
                " _0044X. to parameter acti_dial_agent")
            reply = await agent.request("makecall", extension="101", destination="102")
            established = await agent.expect("established", extension="101", timeout=30)
            assert established["callid"] == reply["callid"]
        # refused before anything was dialled: the first channel Asterisk created is the
        # allowed call's agent leg, and 101 was called once
        assert watch.created[0].startswith("PJSIP/101-"), watch.created
        assert len(watch.named("PJSIP/101-")) == 1, watch.created
        delivered = await supervisor.expect("delivered", extension="102", timeout=30)
        callid = delivered["callid"]
        with pytest.raises(CtiError, match=f"not allowed: user {sam} may not act on extension"
                                           " 102"):
            await supervisor.request("hangup", extension="102", callid=callid)
        await agent.request("hangup", extension="101", callid=reply["callid"])
        await agent.expect("connectioncleared", extension="101", callid=reply["callid"],
                           timeout=20)

        # the administrator moves the agent to 103: its monitor of 101 ends at once
        assert re.search(rf"{alice}\s", _shell(lab, "show monitors"))
        out = _shell(lab, f"update user {alice} extensions 103")
        assert "1 monitor(s) it may no longer have ended" in out
        assert not re.search(rf"{alice}\s", _shell(lab, "show monitors"))
        with pytest.raises(CtiError, match="may not act on extension 101"):
            await agent.request("snapshot", extension="101")
    finally:
        await agent.close()
        await supervisor.close()
        lab.stop_phone("101")
        lab.stop_phone("102")
        _shell(lab, f"remove user {alice}")
        _shell(lab, f"remove user {sam}")


async def test_dial_policy_change_applies_at_once(lab: Lab, clean_asterisk) -> None:
    """International numbers are refused by default; the administrator allows them with the
    pattern the refusal named, and the next makecall rings the agent's phone."""
    password = secrets.token_urlsafe(12)
    name = f"intl{secrets.token_hex(3)}"
    _shell(lab, f"add user {name} agent 101", stdin=f"{password}\n")
    before = _shell(lab, "show parameter acti_dial_agent").split(" = ", 1)[1].split("  (")[0]
    phone = lab.start_phone("101", Phone(answer_after_ms=None))  # rings: the INVITE is enough
    client = await CtiClient.websocket(lab.config.ws_url, name, password)
    try:
        with pytest.raises(CtiError, match="add _0044X. to parameter acti_dial_agent"):
            await client.request("makecall", extension="101", destination="0044201234567")
        _shell(lab, f"update parameter acti_dial_agent '{before.strip()},_0044X.'")
        reply = await client.request("makecall", extension="101", destination="0044201234567")
        wait_for(lambda: phone.received("INVITE"), 20, "the agent's phone rings")
        await client.request("hangup", extension="101", callid=reply["callid"])
    finally:
        await client.close()
        lab.stop_phone("101")
        _shell(lab, f"update parameter acti_dial_agent '{before.strip()}'")
        _shell(lab, f"remove user {name}")
