"""AcdService pieces that need no Asterisk: names, aliases, reason codes, member format."""

from __future__ import annotations

from pathlib import Path

import pytest

from astcti.cti.acd import STATE_WORDS, AcdError, AcdService, parse_groups
from astcti.cti.directory import Directory
from astcti.cti.hub import Hub
from astcti.store import Store
from astcti.wire import Frame


@pytest.fixture
def acd(tmp_path: Path) -> AcdService:
    store = Store.open(tmp_path / "a.db", create=True)
    yield AcdService(store, Directory(), Hub())
    store.close()


def test_groups_are_parsed_and_checked() -> None:
    assert parse_groups(" support, sales ,support") == ["support", "sales"]
    with pytest.raises(AcdError, match="not a queue name"):
        parse_groups("support,bad name;")


def test_seed_state_names_are_aliases() -> None:
    assert {w: STATE_WORDS[w] for w in ("auto", "manual", "aux", "acw")} == {
        "auto": "ready", "manual": "ready", "aux": "notready", "acw": "acw"}


def test_reason_codes_follow_the_parameter(acd: AcdService) -> None:
    assert acd.check_reason("lunch") == "lunch"
    acd.store.set_parameter("acti_reasoncodes", "break,lunch,2")
    assert acd.check_reason("2") == "2"
    with pytest.raises(AcdError, match="unknown reason code 'nap'"):
        acd.check_reason("nap")
    with pytest.raises(AcdError, match="not a reason code"):
        acd.check_reason("a;b")


def test_member_format_follows_the_flavour(acd: AcdService) -> None:
    assert acd.interfaces("101") == ("Local/101@astcti-agent/n", "PJSIP/101")
    acd.store.set_parameter("acti_flavour", "freepbx")
    assert acd.interfaces("101") == ("Local/101@from-queue/n", "hint:101@ext-local")


def test_default_groups_per_agent_then_global(acd: AcdService) -> None:
    assert acd.default_groups("7001") == []
    acd.store.set_parameter("acti_agentgroups", "support")
    assert acd.default_groups("7001") == ["support"]
    acd.store.set_parameter("acti_agentgroups_7001", "sales,vip")
    assert acd.default_groups("7001") == ["sales", "vip"]


def test_queue_of_prefers_where_the_caller_waited_and_never_guesses(acd: AcdService) -> None:
    from astcti.cti.acd import Agent

    assert acd.queue_of("101", "c1") is None  # no agent
    acd.agents["101"] = Agent("101", "7001", ["support"])
    assert acd.queue_of("101", "c1") == "support"
    acd.agents["101"].groups.append("sales")
    assert acd.queue_of("101", "c1") is None
    acd.waiting["c1"] = ("sales", 2)
    assert acd.queue_of("101", "c1") == "sales"


class Collect:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def deliver(self, frame: Frame) -> None:
        self.texts.append(frame.text)

    def deliver_many(self, frames: list[Frame]) -> None:
        self.texts += [f.text for f in frames]


def test_pause_made_outside_astcti_is_reported(acd: AcdService) -> None:
    import json

    from astcti.cti.acd import Agent

    sink = Collect()
    acd.hub.attach(sink, "101")
    acd.agents["101"] = Agent("101", "7001", ["support"], state="ready")

    def device(state: str, name: str = "Queue:support_pause_Local/101@astcti-agent/n") -> dict:
        return {"type": "DeviceStateChanged", "device_state": {"name": name, "state": state}}

    acd._on_pause_state(device("INUSE", "Queue:sales_pause_Local/101@astcti-agent/n"))  # not its queue
    acd._on_pause_state(device("NOT_INUSE"))  # agrees with astcti: nothing to say
    assert sink.texts == []
    acd._on_pause_state(device("INUSE"))
    acd._on_pause_state(device("NOT_INUSE"))
    assert [json.loads(t)["event"] for t in sink.texts] == ["agentnotready", "agentready"]
    assert acd.store.agents()[0].state == "ready"
    acd._busy.add("101")  # astcti's own change in flight: its result is announced by it
    acd._on_pause_state(device("INUSE"))
    assert len(sink.texts) == 2


async def test_manual_in_means_after_call_work_after_each_queue_call(acd: AcdService) -> None:
    """Avaya's manual-in (the author's `setstate manual`): after-call work follows each queue
    call even when parameter acti_autoacw is off; auto-in does not."""
    import asyncio

    from astcti.cti.acd import Agent

    started: list[str] = []

    async def set_state(agent: Agent, state: str, reason: str, mode: str | None = None) -> None:
        started.append(f"{agent.agentid}:{state}")

    acd._set_state = set_state  # type: ignore[method-assign]  (no Asterisk here)
    manual = Agent("101", "7001", ["support"], state="ready", mode="manual")
    auto = Agent("102", "7002", ["support"], state="ready", mode="auto")
    acd.agents.update({"101": manual, "102": auto})
    acd._auto_acw(manual)
    acd._auto_acw(auto)
    for _ in range(10):
        await asyncio.sleep(0)
    assert started == ["7001:acw"]
    row = Agent("101", "7001", ["support"], state="ready", mode="manual").row()
    acd.store.save_agent(row)
    assert acd.store.agents()[0].mode == "manual"  # kept across daemon restarts
