"""The bridge/leg model on its own: the clean-up rule, what a request locks, the locks."""

from __future__ import annotations

import asyncio

from astcti.cti.control.model import CallState, Conversation, Leg, Locks, Verdict


def test_clean_up_rule() -> None:
    conv = Conversation("l1", "b1")
    assert conv.verdict(["a", "b"], holder_alive=False) is Verdict.KEEP
    assert conv.verdict(["a"], holder_alive=True) is Verdict.KEEP  # held: the customer waits
    assert conv.verdict(["a"], holder_alive=False) is Verdict.OVER
    assert conv.verdict([], holder_alive=True) is Verdict.OVER  # nobody left to hold for
    conv.incoming.add("c")
    assert conv.verdict(["a"], holder_alive=False) is Verdict.KEEP  # someone being dialled in
    conv.incoming.clear()
    conv.recall = "101"
    assert conv.verdict(["a"], holder_alive=False) is Verdict.RECALL


def test_closure_covers_every_conversation_of_the_agents_one_leg() -> None:
    """An agent consulting: its leg is in one bridge and holds another; a request on either
    call locks all of it (and nothing of an unrelated call)."""
    state = CallState()
    for leg in ("agent", "customer", "consulted", "other1", "other2"):
        state.add_leg(Leg("l1", leg, f"PJSIP/{leg}"))
    held = Conversation("l1", "b1", members={"customer"}, holder="agent")
    active = Conversation("l1", "b2", members={"agent", "consulted"})
    unrelated = Conversation("l1", "b3", members={"other1", "other2"})
    for conv in (held, active, unrelated):
        state.add_conv(conv)
        for member in conv.members:
            state.member_of[("l1", member)] = conv
    assert state.calls_of("l1", "agent") == [active, held]
    assert state.closure("l1", ["agent"]) == {"agent", "customer", "consulted"}
    assert state.closure("l1", ["customer"]) == {"agent", "customer"}
    assert state.closure("l1", ["other1"]) == {"other1", "other2"}


def test_holders_and_dialled_legs_are_found_by_channel_and_forgotten_with_their_call() -> None:
    """Every request and reaction asks who holds what and what is being dialled where: an
    index by channel answers, and what a conversation held or expected leaves it with it."""
    state = CallState()
    calls = [state.add_conv(Conversation("l1", f"b{i}", members={f"c{i}"})) for i in range(500)]
    held, consult = calls[7], calls[8]
    state.set_holder(held, "agent")
    state.expect(consult, "far")
    assert state.held_by("l1", "agent") == [held]
    assert state.incoming_to("l1", "far") is consult
    assert state.incoming_to("l2", "far") is None  # another Asterisk's channel of that id
    state.set_holder(held, None)  # retrieved
    assert state.held_by("l1", "agent") == [] and held.holder is None
    state.unexpect(consult, "far")  # answered (or refused)
    assert state.incoming_to("l1", "far") is None and not consult.incoming
    state.set_holder(held, "agent")
    state.expect(consult, "far2")
    state.drop_conv(held)
    state.drop_conv(consult)
    assert state.held_by("l1", "agent") == [] and state.incoming_to("l1", "far2") is None
    assert state.indexed() == 0
    state.expect(calls[9], "far3")
    state.forget_link("l1")
    assert state.indexed() == 0 and not state.convs


def test_the_legs_dialled_for_a_caller_are_found_by_it_and_forgotten_with_them() -> None:
    """A caller that hangs up stops the legs still ringing for it: found without a scan."""
    state = CallState()
    for i in range(500):
        state.add_leg(Leg("l1", f"other{i}", "PJSIP/x", peer=f"caller{i}"))
    state.add_leg(Leg("l1", "caller", "PJSIP/trunk"))
    ringing = state.add_leg(Leg("l1", "agent", "PJSIP/101", peer="caller"))
    assert state.dialled_for("l1", "caller") == [ringing]
    resumed = state.add_leg(Leg("l1", "agent2", "PJSIP/102"))
    state.set_peer(resumed, "caller")  # a restarted astcti ties a waiting leg to its caller
    assert state.dialled_for("l1", "caller") == [ringing, resumed]
    state.forget_leg("l1", "agent")
    assert state.dialled_for("l1", "caller") == [resumed]
    state.forget_leg("l1", "caller")
    state.forget_leg("l1", "agent2")
    state.forget_link("l1")
    assert state.indexed() == 0 and not state.legs


async def test_locks_serialise_one_key_and_free_themselves() -> None:
    locks = Locks()
    order: list[str] = []

    async def work(name: str, keys: list[str], pause: float) -> None:
        async with locks.hold(keys):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    await asyncio.gather(work("a", ["x", "y"], 0.02), work("b", ["y", "x"], 0.0),
                         work("c", ["z"], 0.0))
    assert order.index("a-") < order.index("b+")  # same keys: one after the other, no deadlock
    assert order.index("c+") < order.index("a-")  # other keys: at the same time
    assert locks.busy() == 0


async def test_a_cancelled_waiter_passes_the_lock_on() -> None:
    """A request cancelled while it waits for a channel's lock (its client gone) neither keeps
    the lock nor blocks the next one in line."""
    locks = Locks()
    order: list[str] = []
    first = locks.hold(["x"])
    await first.__aenter__()

    async def work(name: str) -> None:
        async with locks.hold(["x"]):
            order.append(name)

    cancelled = asyncio.create_task(work("cancelled"))
    after = asyncio.create_task(work("after"))
    await asyncio.sleep(0)
    cancelled.cancel()
    first.release()
    await asyncio.gather(cancelled, after, return_exceptions=True)
    assert order == ["after"]
    assert locks.busy() == 0


async def test_a_waiter_cancelled_as_the_lock_is_handed_over_releases_it() -> None:
    locks = Locks()
    first = locks.hold(["x"])
    await first.__aenter__()
    waiting = asyncio.create_task(locks.hold(["x", "y"]).__aenter__())
    await asyncio.sleep(0)
    first.release()  # handed to `waiting`, which has not run yet
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert locks.busy() == 0
    async with locks.hold(["x"]) as held:
        assert not held.waited
