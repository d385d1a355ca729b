"""`python -m tests.bench_frontends`: the same real calls seen over WebSocket, TCP and REST (SSE).

Places CALLS inbound calls to extension 101 through the lab (SIPp trunk -> Asterisk -> SIPp phone)
with one client per transport monitoring 101, and measures per transport the event delivery lag
(receipt time minus the event's Asterisk timestamp) and the round trip of a `snapshot` request.
Prints a Markdown table; figures are measurements of this machine at this moment, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from astcti.client import CtiClient
from tests.bench import _lag_ms, _pct
from tests.lab.harness import Lab
from tests.lab.sipp import Phone

CALLS = int(os.environ.get("BENCH_CALLS", "50"))
RATE = float(os.environ.get("BENCH_RATE", "5"))
ROUND_TRIPS = int(os.environ.get("BENCH_REQUESTS", "300"))


async def _clients(lab: Lab) -> dict[str, CtiClient]:
    c = lab.config
    return {
        "WebSocket": await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password),
        "TCP": await CtiClient.tcp("127.0.0.1", c.tcp_port, c.astcti_user, c.astcti_password),
        "REST + SSE": await CtiClient.rest(f"http://127.0.0.1:{c.rest_port}", c.astcti_user,
                                           c.astcti_password),
    }


async def measure(lab: Lab) -> str:
    lab.start_phone("101", Phone(answer_after_ms=200))
    clients = await _clients(lab)
    lags: dict[str, list[float]] = {name: [] for name in clients}
    trips: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for cti in clients.values():
            await cti.request("startmonitor", extension="101")
            cti.events.clear()
        for name, cti in clients.items():  # one transport at a time: no cross-talk
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                await cti.request("snapshot", extension="101")
                trips[name].append((time.perf_counter() - start) * 1000)
        stamps: dict[str, list[tuple[dict, float]]] = {name: [] for name in clients}
        for name, cti in clients.items():
            original = cti._received

            def stamped(text: str, _name: str = name, _original=original) -> None:
                at = time.time()
                before = len(clients[_name].events)
                _original(text)
                for event in clients[_name].events[before:]:
                    stamps[_name].append((event, at))

            cti._received = stamped  # type: ignore[method-assign]
        caller = lab.call("101", talk_ms=1000, calls=CALLS, rate=RATE)
        await asyncio.to_thread(caller.wait, CALLS / RATE + 60)
        await asyncio.sleep(3)
        for name in clients:
            lags[name] = [_lag_ms(e["timestamp"], at) for e, at in stamps[name]
                          if e.get("timestamp")]
    finally:
        for cti in clients.values():
            await cti.close()
        lab.stop_phone("101")
    lines = [f"{CALLS} inbound calls at {RATE:g}/s to extension 101, one client per transport"
             f" monitoring it; {ROUND_TRIPS} `snapshot` requests per transport, one at a time.", "",
             "| transport | events | lag p50 ms | lag p99 ms | lag max ms | snapshot p50 ms |"
             " snapshot p99 ms |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in clients:
        lag, trip = lags[name], trips[name]
        lines.append(f"| {name} | {len(lag)} | {statistics.median(lag):.1f} |"
                     f" {_pct(lag, 99):.1f} | {max(lag):.1f} | {statistics.median(trip):.2f} |"
                     f" {_pct(trip, 99):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    lab = Lab(log=lambda msg: None)
    lab.up(phones="none")
    try:
        print(asyncio.run(measure(lab)))
    finally:
        lab.down()


if __name__ == "__main__":
    main()
