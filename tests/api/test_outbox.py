import asyncio

from astcti.api.outbox import Outbox
from astcti.wire import Frame


class Transport:
    """The part of an asyncio transport the outbox uses; `backlog` bytes the socket has not
    taken yet."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.backlog = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return self.closing


async def test_frames_written_in_order_with_the_transport_encoding() -> None:
    transport = Transport()

    async def overflow(reason: str) -> None:
        raise AssertionError(reason)

    box = Outbox(transport, lambda f: f.line, overflow, "test")  # type: ignore[arg-type]
    frames = [Frame.of({"n": i}) for i in range(3)]
    box.put(frames[0])
    box.put_many(frames[1:])
    box.write(b"reply\n")
    assert transport.written == [b'{"n":0}\n', b'{"n":1}\n{"n":2}\n', b"reply\n"]


async def test_slow_client_dropped_with_reason_and_nothing_more_written() -> None:
    transport = Transport()
    reasons: list[str] = []

    async def overflow(reason: str) -> None:
        reasons.append(reason)

    box = Outbox(transport, lambda f: f.ws, overflow, "test", limit=4096)  # type: ignore[arg-type]
    box.put(Frame.of({"n": 1}))
    transport.backlog = 5000  # the client stopped reading
    box.put(Frame.of({"n": 2}))
    box.put(Frame.of({"n": 3}))
    await asyncio.sleep(0)
    assert reasons == ["client too slow: more than 4 KiB of events unsent"]
    assert len(transport.written) == 1 and box.closed


async def test_nothing_written_once_the_connection_closes() -> None:
    transport = Transport()

    async def overflow(reason: str) -> None:
        raise AssertionError(reason)

    box = Outbox(transport, lambda f: f.line, overflow, "test")  # type: ignore[arg-type]
    transport.closing = True
    box.put(Frame.of({}))
    assert transport.written == [] and box.closed
