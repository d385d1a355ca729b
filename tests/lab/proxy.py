"""A TCP proxy of the tests' own between astcti and ARI, which can drop or stall connections.

`stall()` keeps sockets open but forwards nothing (a network cut neither side notices);
`drop()` closes every connection; `refuse()` also refuses new ones until `heal()`.
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultyProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.stalled = False
        self.refusing = False
        self.accepted = 0

    async def start(self) -> FaultyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    while self.stalled:
                        await asyncio.sleep(0.05)
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._conns.discard(writer)
        self._conns.discard(up_writer)

    def stall(self) -> None:
        self.stalled = True

    def drop(self) -> None:
        for w in list(self._conns):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._conns.clear()

    def refuse(self) -> None:
        self.refusing = True
        self.drop()

    def heal(self) -> None:
        """Forward again; stalled connections are cut so both ends reconnect cleanly."""
        self.refusing = False
        if self.stalled:
            self.drop()
        self.stalled = False

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
