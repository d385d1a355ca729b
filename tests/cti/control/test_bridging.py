"""Bridging's locking: what a request holds when the call changed while it waited."""

from __future__ import annotations

import asyncio

from astcti.cti.control.bridging import LockedCall
from astcti.cti.control.model import CallState, Conversation, Locks


async def test_a_call_that_grew_while_waiting_is_locked_whole() -> None:
    """B waits for the customer's lock while A bridges the customer with an agent: B then holds
    the agent's lock too (a request must not touch a party it has not locked)."""
    state, locks = CallState(), Locks()
    seen: list[int] = []

    async def a() -> None:
        async with LockedCall(state, locks, "l1", lambda: ["customer"]):
            await asyncio.sleep(0.01)
            conv = Conversation("l1", "b1", members={"customer", "agent"})
            state.add_conv(conv)
            state.member_of[("l1", "customer")] = conv
            state.member_of[("l1", "agent")] = conv

    async def b() -> None:
        await asyncio.sleep(0)
        async with LockedCall(state, locks, "l1", lambda: ["customer"]):
            seen.append(locks.busy())

    await asyncio.gather(a(), b())
    assert seen == [2]  # l1:customer and l1:agent
    assert locks.busy() == 0


async def test_a_free_call_is_locked_at_once() -> None:
    state, locks = CallState(), Locks()
    async with LockedCall(state, locks, "l1", lambda: ["x", "y"]):
        assert locks.busy() == 2
    assert locks.busy() == 0
