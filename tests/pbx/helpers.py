"""What the pbx lab tests share: a wait on a real condition (never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], timeout: float = 15.0,
                what: str = "condition not met in time") -> None:
    """Wait, letting the link's events in, until `predicate` holds; fail with `what` after
    `timeout` seconds (the machine is shared: generous timeouts, exact conditions)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.05)
