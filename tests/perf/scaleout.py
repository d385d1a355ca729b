"""Past one machine, simulated on one: astcti cores publishing CTI events on NATS, edges fanning
them out to clients (docs/scaling.md has the design this measures).

    python -m tests.perf.scaleout [--cores 2] [--edges 2] [--clients 500] [--rate 400]
                                  [--seconds 20]

- A *core* owns PBX links: it replays the ARI streams recorded in the lab (tests/cti/recordings,
  each round with fresh channel ids) through astcti's own Tracker and Hub, at `rate` ARI events
  per second, and publishes each CTI event once, as the frame astcti serialises, on the NATS
  subject `astcti.ev.<extension>`. Each core has its own extensions (core 2's 101 is 2101).
- An *edge* holds client connections: it subscribes to the subjects of the extensions its
  clients monitor and writes each frame to each of them, through astcti's Outbox into real
  sockets (socket pairs whose other ends a drain process reads).
- A local nats-server (Debian's `nats-server`) routes between them.

Measured over the window: CPU per event of each role (from /proc), the NATS hop's added latency
(publish to edge receipt, same clock), events and deliveries per second. Nothing asserts a
figure; docs/scaling.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECORDINGS = REPO / "tests" / "cti" / "recordings"
SUBJECT = "astcti.ev"


def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _recorded_lines() -> list[str]:
    lines = []
    for f in sorted(RECORDINGS.glob("*.jsonl")):
        lines += [line for line in f.read_text().splitlines()
                  if json.loads(line).get("type") != "ChannelVarset"]
    return lines


# -- core ----------------------------------------------------------------------------------------
def _run(coro) -> None:
    """On uvloop, as the daemon runs."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def core_main(index: int, url: str, rate: float, start_at: float, stop_at: float,
              out: mp.Queue) -> None:
    _run(_core(index, url, rate, start_at, stop_at, out))


async def _core(index: int, url: str, rate: float, start_at: float, stop_at: float,
                out: mp.Queue) -> None:
    import nats

    from astcti.cti.hub import Hub
    from astcti.cti.tracker import Tracker

    nc = await nats.connect(url)
    watched = {f"PJSIP/{n}": f"{index}{n}" for n in ("101", "102", "103", "104")}
    tracker = Tracker(lambda link, ep: watched.get(ep))
    hub = Hub()

    outgoing: list[tuple[str, bytes]] = []

    class Publisher:
        """The hub's subscriber for one extension: its frames go out on its subject."""

        def __init__(self, ext: str) -> None:
            self.subject = f"{SUBJECT}.{ext}"

        def deliver(self, frame) -> None:
            outgoing.append((self.subject, frame.data))

        def deliver_many(self, frames) -> None:
            for frame in frames:
                self.deliver(frame)

    for ext in watched.values():
        hub.attach(Publisher(ext), ext)
    lines = _recorded_lines()
    while time.time() < start_at:
        await asyncio.sleep(0.01)
    cpu0, t0 = _cpu(os.getpid()), time.time()
    ari = cti = 0
    rounds = 0
    tick = 0.01  # paced in 10 ms bursts: rate * tick events, then sleep to the next tick
    burst = max(1, round(rate * tick)) if rate else 50
    next_at = time.monotonic()
    while time.time() < stop_at:
        rounds += 1
        for line in lines:
            event = json.loads(line.replace('"17957', f'"{index}{rounds}7957'))
            events = tracker.handle("l1", event)
            if events:
                hub.publish_all(events)
                cti += len(events)
                sent = {"t": repr(time.time())}
                for subject, data in outgoing:
                    await nc.publish(subject, data, headers=sent)
                outgoing.clear()
            ari += 1
            if ari % burst == 0:
                if rate:
                    next_at += tick
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                else:
                    await asyncio.sleep(0)  # let the client flush
                if time.time() >= stop_at:
                    break
    await nc.flush()
    cpu1, t1 = _cpu(os.getpid()), time.time()
    out.put(("core", index, {"ari": ari, "cti": cti, "cpu": cpu1 - cpu0, "secs": t1 - t0}))
    await nc.close()


# -- edge ----------------------------------------------------------------------------------------
def edge_main(index: int, url: str, extensions: list[str], socks: list[socket.socket],
              start_at: float, stop_at: float, out: mp.Queue) -> None:
    _run(_edge(index, url, extensions, socks, start_at, stop_at, out))


async def _edge(index: int, url: str, extensions: list[str], socks: list[socket.socket],
                start_at: float, stop_at: float, out: mp.Queue) -> None:
    import nats

    from astcti.api.outbox import Outbox
    from astcti.wire import Frame

    loop = asyncio.get_running_loop()

    async def overflow(reason: str) -> None:
        print(f"edge {index}: {reason}", file=sys.stderr)

    boxes: dict[str, list[Outbox]] = {ext: [] for ext in extensions}
    for i, sock in enumerate(socks):  # clients spread over the extensions, as in the bench
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock)
        boxes[extensions[i % len(extensions)]].append(
            Outbox(transport, lambda f: f.ws, overflow, f"edge{index}-{i}"))  # type: ignore
    lags: list[float] = []
    counters = {"events": 0, "deliveries": 0}
    measuring = False

    async def on_message(msg) -> None:
        now = time.time()
        frame = Frame(msg.data)
        for box in boxes[msg.subject.rsplit(".", 1)[1]]:
            box.put(frame)
        if measuring:
            counters["events"] += 1
            counters["deliveries"] += len(boxes[msg.subject.rsplit(".", 1)[1]])
            lags.append((now - float(msg.headers["t"])) * 1000)

    nc = await nats.connect(url)
    for ext in extensions:
        await nc.subscribe(f"{SUBJECT}.{ext}", cb=on_message)
    await nc.flush()
    while time.time() < start_at:
        await asyncio.sleep(0.01)
    measuring = True
    cpu0, t0 = _cpu(os.getpid()), time.time()
    while time.time() < stop_at:
        await asyncio.sleep(0.05)
    measuring = False
    cpu1, t1 = _cpu(os.getpid()), time.time()
    out.put(("edge", index, {**counters, "cpu": cpu1 - cpu0, "secs": t1 - t0,
                             "lags": lags[::max(1, len(lags) // 20000)]}))
    await nc.close()


def drain_main(socks: list[socket.socket]) -> None:
    """The clients' ends: read everything, as a live client does."""
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select(1.0):
            try:
                if not key.fileobj.recv(1 << 16):  # type: ignore[union-attr]
                    sel.unregister(key.fileobj)
            except BlockingIOError:
                pass
        if not sel.get_map():
            return


# -- the run -------------------------------------------------------------------------------------
def run(cores: int, edges: int, clients: int, rate: float, seconds: float,
        port: int) -> dict:
    server = shutil.which("nats-server")
    if server is None:
        raise SystemExit("scaleout: nats-server is missing: apt-get install nats-server")
    nats_proc = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 3.0
    stop_at = start_at + seconds
    procs = []
    extensions = [f"{c}{n}" for c in range(1, cores + 1) for n in ("101", "102", "103", "104")]
    drains = []
    for e in range(edges):
        pairs = [socket.socketpair() for _ in range(clients)]
        for a, b in pairs:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        drain = ctx.Process(target=drain_main, args=([b for _, b in pairs],), daemon=True)
        drain.start()
        drains.append(drain)
        edge = ctx.Process(target=edge_main, args=(e + 1, url, extensions, [a for a, _ in pairs],
                                                  start_at, stop_at, out))
        edge.start()
        procs.append(edge)
        for a, b in pairs:
            a.close()
            b.close()
    for c in range(cores):
        core = ctx.Process(target=core_main, args=(c + 1, url, rate, start_at, stop_at, out))
        core.start()
        procs.append(core)
    while time.time() < start_at:
        time.sleep(0.01)
    nats0 = _cpu(nats_proc.pid)
    results: dict[str, list[dict]] = {"core": [], "edge": []}
    for _ in procs:
        kind, _index, data = out.get(timeout=seconds + 120)
        results[kind].append(data)
    nats1 = _cpu(nats_proc.pid)
    for p in procs:
        p.join(30)
    for d in drains:
        d.terminate()
    nats_proc.terminate()
    nats_proc.wait(10)
    ari = sum(r["ari"] for r in results["core"])
    cti = sum(r["cti"] for r in results["core"])
    lags = [lag for r in results["edge"] for lag in r["lags"]]
    events = sum(r["events"] for r in results["edge"])
    deliveries = sum(r["deliveries"] for r in results["edge"])
    return {
        "cores": cores, "edges": edges, "clients": clients, "rate": rate, "seconds": seconds,
        "ari_per_s": ari / seconds, "cti_per_s": cti / seconds,
        "edge_events_per_s": events / seconds, "deliveries_per_s": deliveries / seconds,
        "core_us_per_ari": sum(r["cpu"] for r in results["core"]) / max(ari, 1) * 1e6,
        "core_us_per_cti": sum(r["cpu"] for r in results["core"]) / max(cti, 1) * 1e6,
        "nats_us_per_msg": (nats1 - nats0) / max(events, 1) * 1e6,
        "edge_us_per_event": sum(r["cpu"] for r in results["edge"]) / max(events, 1) * 1e6,
        "edge_us_per_delivery": sum(r["cpu"] for r in results["edge"]) / max(deliveries, 1)
        * 1e6,
        "core_cpu": [r["cpu"] / r["secs"] for r in results["core"]],
        "edge_cpu": [r["cpu"] / r["secs"] for r in results["edge"]],
        "nats_cpu": (nats1 - nats0) / seconds,
        "lag_p50": _pct(lags, 50), "lag_p99": _pct(lags, 99),
        "lag_max": max(lags) if lags else float("nan"),
        "lag_mean": statistics.fmean(lags) if lags else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.scaleout")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--edges", type=int, default=2)
    parser.add_argument("--clients", type=int, default=500, help="per edge")
    parser.add_argument("--rate", type=float, default=400.0,
                        help="ARI events per second per core (0: as fast as it can)")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    port = 4222 + int(os.environ.get("ASTCTI_LAB_PORT_OFFSET", "0"))
    print(json.dumps(run(args.cores, args.edges, args.clients, args.rate, args.seconds, port),
                     indent=1))


if __name__ == "__main__":
    main()
