import asyncio

from astcti.api.outbox import Outbox


async def test_order_kept_and_slow_client_dropped_with_reason() -> None:
    written: list[str] = []
    gate = asyncio.Event()
    reasons: list[str] = []

    async def write(text: str) -> None:
        await gate.wait()
        written.append(text)

    async def overflow(reason: str) -> None:
        reasons.append(reason)

    box = Outbox(write, overflow, "test", limit=5)
    for i in range(5):
        box.put(str(i))
    await asyncio.sleep(0)
    box.put("5")  # one of the first five is being written: room for one more
    box.put("6")  # now over the limit
    await asyncio.sleep(0.01)
    assert reasons == ["client too slow: 5 messages waiting"]
    box.put("7")  # ignored once closed
    gate.set()
    await asyncio.sleep(0.01)
    assert written == ["0"]  # the one in flight; the rest dropped with the client
    await box.close()


async def test_delivers_in_order() -> None:
    written: list[str] = []

    async def write(text: str) -> None:
        written.append(text)

    async def overflow(reason: str) -> None:
        raise AssertionError(reason)

    box = Outbox(write, overflow, "test")
    for i in range(100):
        box.put(str(i))
    await asyncio.sleep(0.01)
    assert written == [str(i) for i in range(100)]
    await box.close()
