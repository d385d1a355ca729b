"""ControlPbx against a scripted link: how it copes with what Asterisk answers (parsing only;
the lab tests prove the calls)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from astcti.cti.control.pbx import ControlPbx
from astcti.pbx.ari import AriError

NOT_IN_STASIS = AriError(409, "Channel not in Stasis application")


class ScriptedLink:
    """A link whose `channels.dial` answers from a script (an exception or None)."""

    def __init__(self, dial_answers: list[AriError | None]) -> None:
        self.config = SimpleNamespace(app="astcti")
        self.rest = SimpleNamespace(send_json=self.send_json)
        self.dial_answers = dial_answers
        self.dials = 0

    async def send_json(self, method: str, path: str, body: dict[str, Any]) -> None:
        return None

    async def call(self, resource: str, operation: str, **params: Any) -> None:
        assert (resource, operation) == ("channels", "dial")
        self.dials += 1
        answer = self.dial_answers.pop(0)
        if answer is not None:
            raise answer


def control_pbx(link: ScriptedLink) -> ControlPbx:
    return ControlPbx(SimpleNamespace(links={"l1": link}))  # type: ignore[arg-type]


async def test_dial_before_the_channel_is_in_stasis_waits_for_its_stasis_start() -> None:
    link = ScriptedLink([NOT_IN_STASIS, None])
    pbx = control_pbx(link)
    await pbx.create("l1", "PJSIP/102", "c1")
    dial = asyncio.create_task(pbx.dial("l1", "c1", None, 30))
    await asyncio.sleep(0.05)
    assert link.dials == 1 and not dial.done()  # waits for the event, does not poll
    pbx.on_event({"type": "StasisStart", "channel": {"id": "c1"}, "args": ["leg"]})
    await asyncio.wait_for(dial, 1)
    assert link.dials == 2
    assert not pbx._entering  # nothing kept for a dialled channel


async def test_stasis_start_before_the_refusal_dials_again_at_once() -> None:
    link = ScriptedLink([NOT_IN_STASIS, None])
    pbx = control_pbx(link)
    await pbx.create("l1", "PJSIP/102", "c1")
    pbx.on_event({"type": "StasisStart", "channel": {"id": "c1"}, "args": ["leg"]})
    await asyncio.wait_for(pbx.dial("l1", "c1", None, 30), 1)
    assert link.dials == 2


async def test_a_channel_gone_before_stasis_fails_the_dial_with_asterisks_answer() -> None:
    link = ScriptedLink([NOT_IN_STASIS, AriError(404, "Channel not found")])
    pbx = control_pbx(link)
    await pbx.create("l1", "PJSIP/102", "c1")
    dial = asyncio.create_task(pbx.dial("l1", "c1", None, 30))
    await asyncio.sleep(0.05)
    pbx.on_event({"type": "ChannelDestroyed", "channel": {"id": "c1"}})
    with pytest.raises(AriError, match="not found"):
        await asyncio.wait_for(dial, 1)


async def test_other_refusals_are_not_retried() -> None:
    link = ScriptedLink([AriError(409, "Channel is not in the 'Down' state")])
    pbx = control_pbx(link)
    await pbx.create("l1", "PJSIP/102", "c1")
    with pytest.raises(AriError, match="Down"):
        await pbx.dial("l1", "c1", None, 30)
    assert link.dials == 1 and not pbx._entering
