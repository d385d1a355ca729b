"""User data follows a call through call control.

Agent 101 attaches data to a customer's call, transfers it to 102, and 102's `delivered`
carries it. Blind transfer keeps Asterisk's linkedid (the far leg is created with the
customer as originator); attended transfer and conference join a consultation call, whose
data control hands over with `UserDataService.hand_over`.
"""

from __future__ import annotations

import asyncio

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.ari import force_clean
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab


async def connect(lab: Lab, *extensions: str) -> CtiClient:
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    for ext in extensions:
        await client.request("startmonitor", extension=ext)
    return client


async def test_data_attached_by_101_reaches_102_after_a_blind_transfer(lab: Lab) -> None:
    force_clean(lab)  # calls earlier tests left
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=1500))
    client = await connect(lab, "101", "102")
    try:
        caller = lab.call("101", talk_ms=8000)
        established = await client.expect("established", extension="101",
                                          calling="0912345678")
        callid = established["callid"]
        await client.request("userdata", extension="101", callid=callid,
                             data={"crm": "case-42", "note": "wants a refund"})
        await client.request("transfer", extension="101", callid=callid, destination="102")
        delivered = await client.expect("delivered", extension="102", timeout=20)
        assert delivered["userdata"] == {"crm": "case-42", "note": "wants a refund"}
        cleared = await client.expect("connectioncleared", extension="102", timeout=30)
        assert cleared["userdata"]["crm"] == "case-42"
        assert await asyncio.to_thread(caller.wait, 30) == 0
        assert lab.phones["102"].received("INVITE")
    finally:
        await client.close()
        lab.stop_phone("101")
        lab.stop_phone("102")


async def test_data_attached_by_101_reaches_102_in_an_attended_transfer(lab: Lab) -> None:
    force_clean(lab)  # calls earlier tests left
    lab.start_phone("101", Phone(answer_after_ms=300))
    lab.start_phone("102", Phone(answer_after_ms=1500))
    client = await connect(lab, "101", "102")
    try:
        caller = lab.call("101", talk_ms=12000)
        established = await client.expect("established", extension="101",
                                          calling="0912345678")
        held = established["callid"]
        await client.request("userdata", extension="101", callid=held, data={"crm": "case-43"})
        reply = await client.request("consultation", extension="101", callid=held,
                                     destination="102")
        delivered = await client.expect("delivered", extension="102", timeout=20)
        assert delivered["userdata"] == {"crm": "case-43"}  # 102 sees it while consulted
        await client.expect("established", extension="102", timeout=20)
        # 101's consultation is active once astcti saw the far end answer (its Dial event may
        # come after 102's own Up): wait for it rather than race it
        await client.expect("established", extension="101", callid=reply["callid"], timeout=20)
        await client.request("transfer", extension="101", activecallid=reply["callid"],
                             heldcallid=held)
        await client.expect("transferred", extension="102", timeout=20)
        cleared = await client.expect("connectioncleared", extension="102", timeout=30)
        assert cleared["userdata"]["crm"] == "case-43"
        assert await asyncio.to_thread(caller.wait, 40) == 0
    finally:
        await client.close()
        lab.stop_phone("101")
        lab.stop_phone("102")
