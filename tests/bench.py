"""`make bench`: astcti measured against a client on raw ARI, in the same run, on the lab.

Writes docs/benchmarks.md. Figures are measurements of this machine at this moment, not
assertions; nothing here fails on a number.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from astcti.client import CtiClient
from astcti.cti.control.phones import AUTO_ANSWER_HEADERS
from astcti.cti.hub import Hub
from astcti.cti.tracker import Tracker
from astcti.pbx.ari import _auth_header
from astcti.pbx.linkconfig import LinkConfig
from tests.lab.harness import LAB_DIR, Lab, LabConfig
from tests.perf.profiles import CallWindow, cpu_of
from tests.lab.sipp import Phone

REPO = Path(__file__).resolve().parents[1]
RECORDINGS = REPO / "tests" / "cti" / "recordings"
CALLS = int(os.environ.get("BENCH_CALLS", "200"))
RATE = float(os.environ.get("BENCH_RATE", "10"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "20"))


def _lag_ms(ts: str, received: float) -> float:
    # ARI: 2026-11-26T15:08:22.675+0000 (astcti passes it on as +00:00)
    ts = ts[:-6] + "+0000" if ts[-3] == ":" else ts
    sent = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    return (received - sent) * 1000.0


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def _texts(ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event):
    """Text frames until `stop` is set or the socket closes (reading also answers pings)."""
    while not stop.is_set():
        try:
            msg = await ws.receive(timeout=0.5)
        except asyncio.TimeoutError:
            continue
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        yield msg.data


def _time_events(client: CtiClient, lags: list[float]) -> None:
    """Record, for every CTI event the client receives, its lag after Asterisk's timestamp."""
    original = client._received

    def timed(text: str) -> None:
        now = time.time()
        msg = json.loads(text)
        if msg.get("msgtype") == "event" and msg.get("timestamp") and msg.get("callid"):
            lags.append(_lag_ms(msg["timestamp"], now))
        original(text)

    client._received = timed  # type: ignore[method-assign]


async def raw_ari_client(lab: Lab, lags: list[float], stop: asyncio.Event,
                         ready: asyncio.Event) -> int:
    """A minimal client straight on ARI: its own app, same subscriptions and filter as astcti."""
    c = lab.config
    cfg = LinkConfig("raw", "127.0.0.1", c.ari_port, "bench-raw", c.ari_user, c.ari_password)
    headers = {"Authorization": _auth_header(cfg)}
    count = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{c.ari_port}/ari/events",
                                      params={"app": "bench-raw", "subscribeAll": "false"})
        base = f"http://127.0.0.1:{c.ari_port}/ari"
        await session.post(f"{base}/applications/bench-raw/subscription",
                           params={"eventSource": "endpoint:PJSIP/101,deviceState:PJSIP/101"})
        await session.put(f"{base}/applications/bench-raw/eventFilter",
                          json={"disallowed": [{"type": "ChannelVarset"}]})
        ready.set()
        async for text in _texts(ws, stop):
            now = time.time()
            event = json.loads(text)
            if event.get("type", "").startswith("Channel") and "timestamp" in event:
                lags.append(_lag_ms(event["timestamp"], now))
            count += 1
        await ws.close()
    return count


async def latency(lab: Lab) -> dict:
    c = lab.config
    lab.start_phone("101", Phone(answer_after_ms=200))
    stop, ready = asyncio.Event(), asyncio.Event()
    raw_lags: list[float] = []
    raw_task = asyncio.create_task(raw_ari_client(lab, raw_lags, stop, ready))
    await ready.wait()
    clients = []
    astcti_lags: list[float] = []
    for i in range(CLIENTS):
        client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
        await client.request("startmonitor", extension="101")
        clients.append(client)
    _time_events(clients[0], astcti_lags)  # measure on client 0
    started = time.monotonic()
    caller = lab.call("101", talk_ms=1000, calls=CALLS, rate=RATE)
    await asyncio.to_thread(caller.wait, CALLS / RATE + 120)
    await asyncio.sleep(3)
    elapsed = time.monotonic() - started
    stop.set()
    raw_count = await raw_task
    per_client = [len(cl.events) for cl in clients]
    for cl in clients:
        await cl.close()
    lab.stop_phone("101")
    cti_events = per_client[0]
    return {
        "calls": CALLS, "rate": RATE, "clients": CLIENTS, "elapsed": elapsed,
        "raw": raw_lags, "astcti": astcti_lags, "raw_events": raw_count,
        "cti_events": cti_events, "per_client": per_client,
    }


def phase(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} bench: {what}", file=sys.stderr, flush=True)


def _daemon_stats(lab: Lab) -> tuple[int, float]:
    """RSS (KiB) and CPU seconds (user+system) of the lab's astcti process."""
    pid = lab.config.pids["astcti"]
    rss = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, sum(cpu_of(pid))


async def _open_monitors(lab: Lab, session: aiohttp.ClientSession, extensions: list[str]
                         ) -> list[aiohttp.ClientWebSocketResponse]:
    """One lightweight WebSocket client per extension (logged in, monitoring it)."""
    c = lab.config
    sockets = []

    async def one(ext: str) -> aiohttp.ClientWebSocketResponse:
        ws = await session.ws_connect(c.ws_url)
        await ws.send_json({"id": "l", "request": "login", "username": c.astcti_user,
                            "password": c.astcti_password})
        await ws.receive(timeout=60)
        await ws.send_json({"id": "m", "request": "startmonitor", "extension": ext})
        reply = json.loads((await ws.receive(timeout=60)).data)
        assert reply["result"] == "success", reply
        return ws

    for i in range(0, len(extensions), 50):
        sockets += await asyncio.gather(*(one(e) for e in extensions[i:i + 50]))
    return sockets  # callers read them at once (aiohttp answers pings only while reading)


async def _count_events(ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event,
                        counts: list[int], idx: int) -> None:
    async for _text in _texts(ws, stop):
        counts[idx] += 1


async def scale(extensions: int, clients_on_101: int, other_clients: int, calls: int,
                rate: float, lab: Lab | None = None,
                window: type[CallWindow] = CallWindow) -> dict:
    """Latency and completeness with many watched extensions and connected clients."""
    extras = [str(1000 + i) for i in range(extensions - 4)]
    lab = lab or Lab()
    lab.config.extra_extensions = extras
    lab.up(phones="none")
    try:
        await asyncio.sleep(2)
        rss_idle, _ = _daemon_stats(lab)
        lab.start_phone("101", Phone(answer_after_ms=200))
        stop, ready = asyncio.Event(), asyncio.Event()
        raw_lags: list[float] = []
        raw_task = asyncio.create_task(raw_ari_client(lab, raw_lags, stop, ready))
        await ready.wait()
        c = lab.config
        probe = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
        await probe.request("startmonitor", extension="101")
        lags: list[float] = []
        _time_events(probe, lags)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            monitored = ["101"] * (clients_on_101 - 1) + [extras[i % len(extras)]
                                                          for i in range(other_clients)]
            sockets = await _open_monitors(lab, session, monitored)
            rss_clients, _ = _daemon_stats(lab)
            phase(f'{len(sockets)} clients monitoring; calling')
            counts = [0] * len(sockets)
            readers = [asyncio.create_task(_count_events(ws, stop, counts, i))
                       for i, ws in enumerate(sockets)]
            measured = window(lab)
            measured.start()
            caller = lab.call("101", talk_ms=1000, calls=calls, rate=rate)
            await asyncio.to_thread(caller.wait, calls / rate + 180)
            await asyncio.sleep(3)
            measured.stop()
            rss_after, _ = _daemon_stats(lab)
            stop.set()
            phase('calls done')
            await asyncio.gather(*readers, raw_task)
            phase('readers stopped')
            for ws in sockets:
                await ws.close()
        phase('sockets closed')
        await probe.close()
        lab.stop_phone("101")
        phase('probe closed')
        on_101 = counts[:clients_on_101 - 1]
        return {"extensions": extensions, "clients": clients_on_101 + other_clients,
                "calls": calls, "rate": rate, "raw": raw_lags, "astcti": lags,
                "probe_events": len(probe.events),
                "answered": sum(1 for e in probe.events if e.get("event") == "established"),
                "complete": all(n == len(probe.events) for n in on_101),
                "counts_101": sorted(set(on_101)), "rss_idle": rss_idle,
                "rss_clients": rss_clients, "rss_after": rss_after,
                **measured.figures(calls)}
    finally:
        lab.down()


async def scale_point(calls: int, lab: Lab | None = None,
                      window: type[CallWindow] = CallWindow) -> dict:
    """The bench's scale point: 500 watched extensions, 500 clients (10 on the called
    extension), 20 calls/s."""
    return await scale(500, 10, 490, calls, 20, lab=lab, window=window)


async def freepbx_scale(calls: int) -> dict:
    """The scale point on FreePBX 17's dialplan: Dial() connects the calls and astcti only
    watches them (the call path of a site that keeps its PBX's routing), where the Stasis point
    above has astcti bridge every call itself."""
    phase("the scale point on FreePBX's dialplan (astcti watching, not bridging)")
    return await scale_point(calls, lab=Lab(LabConfig.from_env("freepbx")))


async def floor_scale(calls: int) -> dict:
    """The scale point with tests.perf.floor in astcti's place: the same Stasis-path messages
    (requests, events, client frames) with none of astcti's logic, the floor under its CPU."""
    from tests.perf.profiles import FloorLab

    phase("the scale point with the floor app in astcti's place (its messages, not its logic)")
    return await scale_point(calls, lab=FloorLab())


def render_call_paths(sc: dict, fp: dict | None, fl: dict | None = None) -> str:
    """astcti's CPU per call on both call paths, side by side, against the 2 ms target, and
    the floor under the Stasis path's (`floor_scale`)."""
    if fp is None:
        return ""

    def row(what: str, r: dict, floor: bool = False) -> str:
        cpu, ast = r["cpu_per_call_ms"], r["asterisk_cpu_per_call_ms"]
        verdict = ("over the target before any CTI logic" if cpu > 2.0 else "under the target"
                   ) if floor else _verdict(cpu, 2.0, 'ms')
        return (f"| {what} | **{cpu:.2f} ms** ({verdict}) | "
                f"{r['cpu_user_ms']:.2f} / {r['cpu_sys_ms']:.2f} ms | {ast:.2f} ms | "
                f"{cpu / max(ast, 1e-9) * 100:.0f}% |")

    raw, cti = fp["raw"], fp["astcti"]
    return f"""
### CPU per call on both call paths

The same scale point ({fp['extensions']} extensions, {fp['clients']} clients, {fp['calls']} calls
at {fp['rate']:g} calls/s) on the two dialplans astcti runs on. On astcti's own dialplan every
call enters Stasis and astcti answers, bridges and hangs it up (about 8 REST requests and 25 ARI
events per call, the price of call control on the agent's one audio leg). On FreePBX 17's
dialplan, Dial() connects the call and astcti only watches it (13 ARI events per call, 8 of them
the callee channel stepping through FreePBX's dial and answer subroutines).

| call path | astcti CPU per call (target <= 2 ms) | user / system | Asterisk CPU per call | astcti / Asterisk |
| --- | --- | --- | --- | --- |
{row("Stasis: astcti bridges the call", sc)}
{row("FreePBX dialplan: astcti watches", fp)}
{row("Stasis, the floor: the same messages, none of astcti's logic", fl, True) if fl else ""}

On the FreePBX path, astcti added p50 {_pct(cti, 50) - _pct(raw, 50):+.1f} ms and p99
{_pct(cti, 99) - _pct(raw, 99):+.1f} ms to the raw ARI client's event latency; every client
monitoring 101 received the probe's {fp['probe_events']} events:
**{'yes' if fp['complete'] else 'NO: ' + str(fp['counts_101'])}**.
{render_floor(sc, fl) if fl else ""}"""


def render_floor(sc: dict, fl: dict) -> str:
    """What the Stasis path's messages cost before any of astcti's logic, against astcti."""
    own = sc["cpu_per_call_ms"] - fl["cpu_per_call_ms"]
    return f"""
The floor row is `tests/perf/floor.py` run in astcti's place on the same scale point: a
minimal Python ARI app that sends and receives exactly the Stasis path's messages (the same
app, subscriptions and event filter, the 8 requests per call in astcti's order, a frame per
CTI event to the same {fl['clients']} clients) on astcti's event loop, JSON library and
WebSocket framing, with no tracker, call model, locks, user data or rights. It spent
**{fl['cpu_per_call_ms']:.2f} ms** per call ({fl['cpu_user_ms']:.2f} user /
{fl['cpu_sys_ms']:.2f} system): {'above' if fl['cpu_per_call_ms'] > 2.0 else 'under'} the
2 ms target before any CTI logic. astcti's own logic adds **{own:+.2f} ms** per call over it
({own / max(sc['cpu_per_call_ms'], 1e-9) * 100:.0f}% of astcti's CPU on this path): what
astcti's code can still win there, whatever is done to it. The floor's system time is the
sockets: every ARI event, REST request and reply, and client frame is a system call.
"""


async def _served(lab: Lab, extension: str, timeout: float = 300.0) -> float:
    """When the daemon serves `extension` (every extension subscribed after the link came up):
    the monotonic time it first did."""
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await client.request("startmonitor", extension=extension, check=False)
            if reply["result"] == "success":
                return time.monotonic()
            await asyncio.sleep(0.2)
        raise RuntimeError(f"extension {extension} not served within {timeout:.0f} s")
    finally:
        await client.close()


async def memory(extensions: int, clients: int) -> dict:
    extras = [str(1000 + i) for i in range(extensions - 4)]
    lab = Lab()
    lab.config.extra_extensions = extras
    started = time.monotonic()
    lab.up(phones="none")
    try:
        ready = await _served(lab, extras[-1] if extras else "101") - started
        await asyncio.sleep(2)
        rss_idle, _ = _daemon_stats(lab)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            sockets = await _open_monitors(lab, session, [extras[i % len(extras)]
                                                          for i in range(clients)])
            await asyncio.sleep(2)
            rss_clients, _ = _daemon_stats(lab)
            for ws in sockets:
                await ws.close()
        return {"extensions": extensions, "clients": clients, "rss_idle": rss_idle,
                "rss_clients": rss_clients, "ready_s": ready}
    finally:
        lab.down()


def replay_throughput(seconds: float = 5.0, subscribers: int = 10) -> dict:
    """Recorded ARI text through json.loads + tracker + hub (fan-out to in-memory sinks)."""
    lines = []
    for f in sorted(RECORDINGS.glob("*.jsonl")):
        lines += [l for l in f.read_text().splitlines()
                  if json.loads(l).get("type") != "ChannelVarset"]
    watched = {"PJSIP/101": "101", "PJSIP/102": "102", "PJSIP/103": "103", "PJSIP/104": "104"}

    class Sink:
        n = 0

        def deliver(self, frame) -> None:
            self.n += 1

        def deliver_many(self, frames) -> None:
            self.n += len(frames)

    tracker = Tracker(lambda link, ep: watched.get(ep))
    hub = Hub()
    sinks = [Sink() for _ in range(subscribers)]
    for s in sinks:
        for ext in watched.values():
            hub.attach(s, ext)
    ari_events = cti_events = 0
    start = time.process_time()
    rounds = 0
    while time.process_time() - start < seconds:
        rounds += 1
        for line in lines:
            # make each replay round a fresh set of channels
            event = json.loads(line.replace('"17957', f'"{rounds}7957'))
            for ev in tracker.handle("l1", event):
                hub.publish(ev)
                cti_events += 1
            ari_events += 1
    cpu = time.process_time() - start
    return {"ari_events": ari_events, "cti_events": cti_events, "cpu": cpu,
            "subscribers": subscribers, "deliveries": sum(s.n for s in sinks)}


LOAD: dict = {"text": "not measured"}


class LoadMeter:
    """The machine's load average and CPU steal over the bench (from /proc/stat)."""

    def __init__(self) -> None:
        self.start = self._stat()

    @staticmethod
    def _stat() -> list[int]:
        return [int(x) for x in open("/proc/stat").readline().split()[1:9]]

    def stop(self) -> str:
        end = self._stat()
        delta = [b - a for a, b in zip(self.start, end)]
        total = sum(delta) or 1
        busy = 1 - (delta[3] + delta[4]) / total
        load = os.getloadavg()
        LOAD["text"] = (f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, the cores"
                        f" {busy * 100:.0f}% busy, {delta[7] / total * 100:.0f}% stolen by the"
                        " hypervisor")
        return LOAD["text"]


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()},"
            f" Python {platform.python_version()}")


def render(lat: dict, rep: dict) -> str:
    raw, cti = lat["raw"], lat["astcti"]
    rows = []
    for name, vals in (("raw ARI client", raw), ("astcti WebSocket client", cti)):
        rows.append(f"| {name} | {len(vals)} | {_pct(vals, 50):.1f} | {_pct(vals, 99):.1f} |"
                    f" {max(vals) if vals else float('nan'):.1f} |")
    added50 = _pct(cti, 50) - _pct(raw, 50)
    added99 = _pct(cti, 99) - _pct(raw, 99)
    expected = lat["cti_events"]
    complete = all(n == expected for n in lat["per_client"])
    return f"""# Benchmarks

Generated by `make bench` (tests/bench.py) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.
Machine: {machine()}. Asterisk 22 (lab chroot), SIPp, everything on loopback; astcti and the raw
client measured **in the same run, on the same calls**, so the comparison holds on a noisy machine.
Load while it ran: {LOAD['text']}. CPU milliseconds grow with the load of other processes (and the
hypervisor's steal); the ratios to Asterisk and the raw client in the same run, and the
instruction counts, do not.

## Event latency: astcti vs a client on raw ARI

{lat['calls']} calls from the SIPp trunk to extension 101 at {lat['rate']:g} calls/s (the SIPp phone
answers after 200 ms, 1 s of talk); 4 extensions watched by astcti; {lat['clients']} WebSocket
clients monitoring 101. The raw client is its own ARI app subscribed to the same endpoint and
device state with the same event filter (ChannelVarset off). Lag = receipt time minus the
event's Asterisk `timestamp` (millisecond precision), for channel events (raw) and CTI events
(astcti; each carries the timestamp of the ARI event it came from).

| client | events timed | p50 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- |
{rows[0]}
{rows[1]}

Added by astcti: **p50 {added50:+.1f} ms, p99 {added99:+.1f} ms**. The raw client received
{lat['raw_events']} ARI events; each astcti client received {expected} CTI events
({'the same number on every client' if complete else 'NOT the same number on every client: ' + str(sorted(set(lat['per_client'])))}).

## Pipeline throughput (recorded stream replayed)

The ARI streams recorded in the lab (tests/cti/recordings, ChannelVarset removed as the filter
does) replayed as text through `json.loads` + tracker + hub with {rep['subscribers']} subscribers per
extension, on one core for {rep['cpu']:.1f} s of CPU:

| ARI events/s | CTI events/s | deliveries/s |
| --- | --- | --- |
| {rep['ari_events'] / rep['cpu']:,.0f} | {rep['cti_events'] / rep['cpu']:,.0f} | {rep['deliveries'] / rep['cpu']:,.0f} |

(The delivery side here stops at the subscriber's queue; WebSocket framing and the network are in
the latency figures above.)
"""


def _invite_times(proc) -> list[float]:
    """Wall-clock receipt times of the INVITEs in a SIPp phone's message log."""
    times = []
    for block in proc.messages().split("----------------------------------------------- ")[1:]:
        head, _, rest = block.partition("\n")
        kind, _, body = rest.partition("\n")
        if "message received" in kind and body.lstrip().startswith("INVITE "):
            stamp = datetime.strptime(head.strip(), "%Y-%m-%d %H:%M:%S.%f")
            times.append(stamp.replace(tzinfo=timezone.utc).timestamp())
    return times


async def makecall_vs_originate(lab: Lab, rounds: int = 60) -> dict:
    """Request -> INVITE at the phone: astcti makecall vs one direct ARI originate."""
    c = lab.config
    phone = lab.start_phone("101", Phone(reject=486))  # no call to clean up, INVITE timing only
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    cfg = LinkConfig("raw", "127.0.0.1", c.ari_port, "bench-raw", c.ari_user, c.ari_password)
    astcti_ms: list[float] = []
    raw_ms: list[float] = []
    raw_aa_ms: list[float] = []  # the same originate with astcti's auto-answer variables
    async with aiohttp.ClientSession(headers={"Authorization": _auth_header(cfg)}) as session:
        ws = await session.ws_connect(f"ws://127.0.0.1:{c.ari_port}/ari/events",
                                      params={"app": "bench-raw"})  # registers the app
        base = f"http://127.0.0.1:{c.ari_port}/ari"

        async def one(action) -> float:
            before = len(_invite_times(phone))
            t0 = time.time()
            await action()
            for _ in range(400):
                times = _invite_times(phone)
                if len(times) > before:
                    return (times[before] - t0) * 1000
                await asyncio.sleep(0.01)
            raise RuntimeError("no INVITE reached the phone")

        async def astcti() -> None:
            await client.request("makecall", extension="101", destination="102")

        async def raw() -> None:
            async with session.post(f"{base}/channels", params={
                    "endpoint": "PJSIP/101", "app": "bench-raw"}) as resp:
                assert resp.status == 200, await resp.text()

        variables = {f"PJSIP_HEADER(add,{name})": value
                     for name, value in AUTO_ANSWER_HEADERS.items()}

        async def raw_aa() -> None:
            async with session.post(f"{base}/channels", params={
                    "endpoint": "PJSIP/101", "app": "bench-raw"},
                    json={"variables": variables}) as resp:
                assert resp.status == 200, await resp.text()

        for _ in range(rounds):  # the three in turn, so load changes hit them alike
            astcti_ms.append(await one(astcti))
            await asyncio.sleep(0.3)
            raw_ms.append(await one(raw))
            await asyncio.sleep(0.3)
            raw_aa_ms.append(await one(raw_aa))
            await asyncio.sleep(0.3)
        await ws.close()
    await client.close()
    lab.stop_phone("101")
    return {"astcti": astcti_ms, "raw": raw_ms, "raw_aa": raw_aa_ms, "rounds": rounds,
            "load": os.getloadavg()[0]}


def render_makecall(mc: dict) -> str:
    a50, r50 = statistics.median(mc["astcti"]), statistics.median(mc["raw"])
    h50 = statistics.median(mc["raw_aa"])
    ratio = a50 / r50 if r50 else float("nan")
    verdict = "met" if ratio <= 1.2 else f"missed: {ratio:.3f}x"
    return f"""
## makecall: request to INVITE at the phone

{mc['rounds']} rounds, each an astcti `makecall` (WebSocket request: the agent leg originated with
auto-answer headers), a direct ARI originate (`POST /channels`) and the same direct originate
carrying astcti's auto-answer headers as channel variables, to the same SIPp phone; time from
sending the request to the INVITE's arrival in the phone's message log. Load average (1 min)
at the end: {mc['load']:.1f}.

| path | p50 ms | min ms | max ms |
| --- | --- | --- | --- |
| direct ARI originate | {r50:.1f} | {min(mc['raw']):.1f} | {max(mc['raw']):.1f} |
| direct ARI originate + auto-answer headers | {h50:.1f} | {min(mc['raw_aa']):.1f} | {max(mc['raw_aa']):.1f} |
| astcti makecall | {a50:.1f} | {min(mc['astcti']):.1f} | {max(mc['astcti']):.1f} |

Ratio of medians: **{ratio:.2f}x** (target <= 1.2x: {verdict}); against the originate with the
same headers: {a50 / h50 if h50 else float('nan'):.2f}x.

astcti sends Asterisk one request for the agent's leg, as the raw client does: an originate
with `app=` and the auto-answer headers as channel variables (`POST /channels` with a JSON
body); the leg enters astcti's Stasis app when the phone answers, and only then is the
destination dialled. The middle row separates what is Asterisk's from what is astcti's: each
`PJSIP_HEADER(add,...)` is written by a synchronous task on the new channel's SIP serializer
(res_pjsip_header_funcs), the first one costing most of the difference; the rest is astcti's
own share (the WebSocket request, the check of the extension, the JSON body).
"""


async def takeover_vs_own(lab: Lab, rounds: int = 10) -> dict:
    """`hold` on a call the PBX's own Dial() rang (Stasis on demand: channel and bridge lists,
    one AMI Redirect, both StasisStarts, astcti's bridge, then the hold) vs `hold` on the same
    call once it is astcti's: response times at the client (WebSocket request to reply)."""
    c = lab.config
    client = await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)
    await client.request("startmonitor", extension="101")
    lab.start_phone("101", Phone(answer_after_ms=200))
    foreign: list[float] = []
    own: list[float] = []

    async def timed(request: str, callid: str) -> float:
        """Request to reply; then its event, as a client waits before its next request."""
        t0 = time.perf_counter()
        await client.request(request, extension="101", callid=callid)
        elapsed = (time.perf_counter() - t0) * 1000
        await client.expect({"hold": "held", "retrieve": "retrieved"}[request],
                            extension="101", timeout=20)
        return elapsed

    try:
        for _ in range(rounds):
            customer = lab.call("8101", talk_ms=60000)  # the plain lab's plain Dial route
            callid = (await client.expect("established", extension="101", timeout=20))["callid"]
            foreign.append(await timed("hold", callid))
            await timed("retrieve", callid)
            own.append(await timed("hold", callid))
            await timed("retrieve", callid)
            await client.request("hangup", extension="101", callid=callid)
            await client.expect("connectioncleared", extension="101", timeout=20)
            await asyncio.to_thread(customer.wait, 20)
    finally:
        await client.close()
        lab.stop_phone("101")
    return {"foreign": foreign, "own": own, "rounds": rounds}


def render_takeover(tk: dict) -> str:
    f50, o50 = statistics.median(tk["foreign"]), statistics.median(tk["own"])
    return f"""
## Stasis on demand: the first request on a call astcti does not own

{tk['rounds']} calls rung by a plain `Dial()` (the customer dials 8101; FreePBX's dial path is the
same case): `hold` once (astcti takes the call over: ARI channel and bridge lists, one AMI
`Redirect` of both channels to `astcti-adopt`, both `StasisStart`s, its own bridge, then the
hold), `retrieve`, and `hold` again on what is now astcti's call. Request to reply at the client
(each request's event awaited before the next, as a client does).

| request | p50 ms | min ms | max ms |
| --- | --- | --- | --- |
| `hold`, call taken over first | {f50:.1f} | {min(tk['foreign']):.1f} | {max(tk['foreign']):.1f} |
| `hold`, astcti's call | {o50:.1f} | {min(tk['own']):.1f} | {max(tk['own']):.1f} |

The takeover costs the difference once per call; every later request is as on astcti's own calls.
"""


def plot(series: dict[str, list[float]], path: Path) -> None:
    """Latency distributions (CDF) of the raw and astcti clients, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for label, values in series.items():
        if not values:
            continue
        xs = sorted(values)
        ys = [(i + 1) / len(xs) * 100 for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")
    ax.set_xlabel("event lag after Asterisk's timestamp (ms)")
    ax.set_ylabel("events (%)")
    ax.set_xlim(0, max(10.0, _pct([v for vs in series.values() for v in vs], 99.5)))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("astcti vs raw ARI: event latency distribution")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def render_scale(sc: dict, mem_small: dict, mem: dict, call_paths: str = "") -> str:
    raw, cti = sc["raw"], sc["astcti"]
    added50 = _pct(cti, 50) - _pct(raw, 50)
    added99 = _pct(cti, 99) - _pct(raw, 99)
    verdict50 = "met" if added50 <= 1.0 else f"missed by {added50 - 1.0:.1f} ms"
    verdict99 = "met" if added99 <= 5.0 else f"missed by {added99 - 5.0:.1f} ms"
    mb = mem["rss_clients"] / 1024
    per_ext = (mem["rss_idle"] - mem_small["rss_idle"]) / max(1, mem["extensions"] -
                                                               mem_small["extensions"])
    per_client = (mem["rss_clients"] - mem["rss_idle"]) / max(1, mem["clients"])
    return f"""
## At scale: {sc['extensions']} watched extensions, {sc['clients']} connected clients

{sc['calls']} calls at {sc['rate']:g} calls/s to extension 101 (SIPp phone answering after 200 ms,
1 s of talk); {sc['extensions']} extensions configured and subscribed on Asterisk; {sc['clients']}
WebSocket clients connected, of which the probe and others monitor 101 and the rest one other
extension each. Same raw ARI client alongside.

| client | events timed | p50 ms | p99 ms | max ms |
| --- | --- | --- | --- | --- |
| raw ARI client | {len(raw)} | {_pct(raw, 50):.1f} | {_pct(raw, 99):.1f} | {max(raw) if raw else float('nan'):.1f} |
| astcti probe client | {len(cti)} | {_pct(cti, 50):.1f} | {_pct(cti, 99):.1f} | {max(cti) if cti else float('nan'):.1f} |

Added by astcti: p50 {added50:+.1f} ms (target <= 1 ms: {verdict50}), p99 {added99:+.1f} ms
(target <= 5 ms: {verdict99}). Every client monitoring 101 received the same number of events
as the probe ({sc['probe_events']}): **{'yes' if sc['complete'] else 'NO: ' + str(sc['counts_101'])}**.
RSS {sc['rss_idle'] / 1024:.0f} MB idle, {sc['rss_clients'] / 1024:.0f} MB with the clients,
{sc['rss_after'] / 1024:.0f} MB after the calls.

### CPU per call

Process CPU time (user + system, from /proc) over the calls, divided by the calls: every ARI
event, REST request, tracker step and client write of the call, and the idle clients'
heartbeats meanwhile.

| process | CPU per call | of which user / system |
| --- | --- | --- |
| astcti | **{sc['cpu_per_call_ms']:.2f} ms** (target <= 2 ms: {_verdict(sc['cpu_per_call_ms'], 2.0, 'ms')}) | {sc['cpu_user_ms']:.2f} / {sc['cpu_sys_ms']:.2f} ms |
| Asterisk (same calls, same window) | {sc['asterisk_cpu_per_call_ms']:.2f} ms | |

astcti spends {sc['cpu_per_call_ms'] / max(sc['asterisk_cpu_per_call_ms'], 1e-9) * 100:.0f}% of
what the Asterisk it watches spends on the same calls.
{call_paths}
## Memory

| watched extensions | connected clients | astcti RSS |
| --- | --- | --- |
| {mem_small['extensions']} | 0 | {mem_small['rss_idle'] / 1024:.0f} MB |
| {mem['extensions']} | 0 | {mem['rss_idle'] / 1024:.0f} MB |
| {mem['extensions']} | {mem['clients']} | **{mb:.0f} MB** (target <= 90 MB: {_verdict(mb, 90, 'MB')}) |

Growth: about {per_ext:.1f} KiB per watched extension and **{per_client:.1f} KiB per connected
client** (target <= 8 KiB: {_verdict(per_client, 8, 'KiB')}).
"""


async def profile_scale(calls: int = 200) -> dict | None:
    """The scale point with the daemon under cProfile (CPU time) for the calls."""
    if os.environ.get("BENCH_PROFILE", "1") != "1":
        return None
    from tests.perf.profiles import ProfiledLab, ProfiledWindow, summarise

    out = LAB_DIR / "daemon.prof"
    phase("profiling the scale point (cProfile, CPU time)")
    sc = await scale_point(calls, lab=ProfiledLab(out), window=ProfiledWindow)
    return {**{k: sc[k] for k in ("calls", "rate", "extensions", "clients")},
            "summary": summarise(out, calls)}


async def count_instructions(calls: int = 30, flavour: str = "asterisk",
                             floor: bool = False) -> dict | None:
    """Instructions per call under callgrind: a small scale point at a rate valgrind keeps up
    with (the fan-out share is the 10 clients on the called extension, as at 500 clients).
    `flavour`: which lab's dialplan routes the calls (see `freepbx_scale`); `floor`: count
    tests.perf.floor in astcti's place (see `floor_scale`)."""
    from tests.perf.profiles import CallgrindFloorLab, CallgrindLab, CallgrindWindow, \
        callgrind_available, instructions

    if os.environ.get("BENCH_CALLGRIND", "1") != "1" or not callgrind_available():
        return None
    out = LAB_DIR / "callgrind.out"
    for old in out.parent.glob("callgrind.out*"):
        old.unlink()
    what = "the floor app" if floor else f"{flavour} dialplan"
    phase(f"counting instructions per call (callgrind, {what})")
    lab_class = CallgrindFloorLab if floor else CallgrindLab
    sc = await scale(50, 10, 40, calls, 2, lab=lab_class(out, LabConfig.from_env(flavour)),
                     window=CallgrindWindow)
    return {"calls": calls, "rate": 2, "extensions": 50, "clients": sc["clients"],
            "on_101": 10, "instructions": instructions(out)}


def _verdict(value: float, target: float, unit: str) -> str:
    return "met" if value <= target else f"missed by {value - target:.1f} {unit}"


def render_profile(prof: dict | None, cg: dict | None, cg_freepbx: dict | None = None,
                   cg_floor: dict | None = None) -> str:
    """Where astcti's CPU goes at the scale point (the profiled run) and its instruction count."""
    if prof is None and cg is None:
        return ""
    text = "\n## Where astcti's CPU goes\n"
    if prof is not None:
        summary = prof["summary"]
        areas = "\n".join(f"| {area} | {share:.0f}% |" for share, area in summary["areas"])
        top = "\n".join(f"| {share:.1f}% | {per_call:.1f} | `{label}` |"
                        for share, per_call, label in summary["top"])
        text += f"""
The scale point again ({prof['calls']} calls at {prof['rate']:g} calls/s, {prof['extensions']}
extensions, {prof['clients']} clients) with the daemon under cProfile timing **CPU time**
(`tests/perf/profiled.py`, switched on for the calls only; a wall-clock profile on a busy
machine blames whatever call the process was preempted in). Profiling inflates the total, so
read the shares, not the absolute times. A generic built-in's time (`dict.get`, `len`) counts
for the parts that call it, in proportion; orjson's counts as JSON. Socket writes run inside
uvloop's transports, which cProfile does not see: they count for their caller (`outbox.write`).

| part of astcti (own CPU time of its functions) | share |
| --- | --- |
{areas}

| share | calls per call | function |
| --- | --- | --- |
{top}
"""
    if cg is not None:
        text += f"""
Instructions per call, counted by callgrind (`valgrind --tool=callgrind`, instrumentation on
for the calls only; exact and unaffected by other load, unlike CPU time):
**{cg['instructions'] / cg['calls'] / 1e6:.2f} million instructions per call** ({cg['calls']}
calls at {cg['rate']:g} calls/s, {cg['extensions']} extensions, {cg['clients']} clients of
which {cg['on_101']} monitor the called extension). Compare this figure between two trees to
judge a change on a loaded machine.
"""
    if cg_freepbx is not None:
        text += f"""
The same count on FreePBX's dialplan (astcti watching, not bridging):
**{cg_freepbx['instructions'] / cg_freepbx['calls'] / 1e6:.2f} million instructions per call**.
"""
    if cg_floor is not None:
        text += f"""
The same count for the floor app on astcti's dialplan (the Stasis path's messages, none of
astcti's logic): **{cg_floor['instructions'] / cg_floor['calls'] / 1e6:.2f} million
instructions per call**.
"""
    return text


def _refuse_if_a_lab_runs() -> None:
    if Lab.running() is not None:
        raise SystemExit("bench: a lab is running; `make lab-down` first (the bench starts its own)")


async def main() -> None:
    import resource

    _refuse_if_a_lab_runs()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    meter = LoadMeter()
    rep = replay_throughput()
    lab = Lab()
    lab.up(phones="none")
    try:
        lat = await latency(lab)
        mc = await makecall_vs_originate(lab)
        tk = await takeover_vs_own(lab)
    finally:
        lab.down()
    meter.stop()
    text = render(lat, rep) + render_makecall(mc) + render_takeover(tk)
    if os.environ.get("BENCH_SCALE", "1") == "1":
        calls = int(os.environ.get("BENCH_SCALE_CALLS", "400"))
        sc = await scale_point(calls)
        fp = await freepbx_scale(calls) if os.environ.get("BENCH_FREEPBX", "1") == "1" else None
        fl = await floor_scale(calls) if fp is not None else None
        mem_small = await memory(4, 0)
        mem = await memory(5000, 1000)
        text += render_scale(sc, mem_small, mem, render_call_paths(sc, fp, fl))
        cg_freepbx = (await count_instructions(flavour="freepbx")) if fp is not None else None
        cg_floor = (await count_instructions(floor=True)) if fl is not None else None
        text += render_profile(await profile_scale(), await count_instructions(), cg_freepbx,
                               cg_floor)
        plot({"raw ARI, 4 ext / 20 clients": lat["raw"],
              "astcti, 4 ext / 20 clients": lat["astcti"],
              f"raw ARI, {sc['extensions']} ext / {sc['clients']} clients": sc["raw"],
              f"astcti, {sc['extensions']} ext / {sc['clients']} clients": sc["astcti"]},
             REPO / "docs" / "latency.png")
        text += "\n![latency distribution](latency.png)\n"
    out = REPO / "docs" / "benchmarks.md"
    if out.exists() and "\n## Soak\n" in out.read_text():  # keep `make soak`'s section
        text = text.rstrip() + "\n\n## Soak\n" + out.read_text().split("\n## Soak\n", 1)[1]
    out.write_text(text)
    print(text)


async def _section_only(measure: Callable[[Lab], Awaitable[dict]],
                        render: Callable[[dict], str]) -> None:
    """One section measured alone on a lab of its own and printed (docs untouched): the quick
    way to see what a change costs without the whole `make bench`."""
    _refuse_if_a_lab_runs()
    lab = Lab()
    lab.up(phones="none")
    try:
        result = await measure(lab)
    finally:
        lab.down()
    print(render(result))


async def makecall_only() -> None:
    """`python -m tests.bench makecall`: that section alone, printed (docs untouched)."""
    await _section_only(makecall_vs_originate, render_makecall)


async def scale_only() -> None:
    """`python -m tests.bench scale`: the scale point on both call paths and the floor under
    the Stasis one, printed (docs untouched; BENCH_SCALE_CALLS calls, 200 by default)."""
    _refuse_if_a_lab_runs()
    calls = int(os.environ.get("BENCH_SCALE_CALLS", "200"))
    sc = await scale_point(calls)
    fp = await freepbx_scale(calls)
    print(render_call_paths(sc, fp, await floor_scale(calls)))


async def takeover_only() -> None:
    """`python -m tests.bench takeover`: that section alone, printed (docs untouched)."""
    await _section_only(takeover_vs_own, render_takeover)


if __name__ == "__main__":
    asyncio.run({"makecall": makecall_only, "takeover": takeover_only,
                 "scale": scale_only}.get(
        " ".join(sys.argv[1:]), main)())
