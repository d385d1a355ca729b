"""`python -m tests.perf.limits`: push one box until astcti's goals break (docs/scaling.md).

Three sweeps on the lab, each point a fresh lab (bench.scale / bench.memory), with the raw ARI
client alongside for the latency: calls per second at the bench's 500 extensions / 500 clients;
connected clients; watched extensions. Goals: added latency p50 <= 1 ms and p99 <= 5 ms over
the raw client, every monitoring client complete, RSS of the 5,000/1,000 point <= 90 MB.
Prints one JSON line per point and a Markdown table at the end. Nothing asserts a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time

from astcti.pbx.link import AsteriskLink, subscribe_batches
from astcti.pbx.linkconfig import LinkConfig
from tests.bench import _pct, memory, phase, scale
from tests.lab.harness import Lab


def _row(point: dict) -> dict:
    raw, cti = point.pop("raw", []), point.pop("astcti", [])
    point["added_p50"] = _pct(cti, 50) - _pct(raw, 50)
    point["added_p99"] = _pct(cti, 99) - _pct(raw, 99)
    point["raw_p99"] = _pct(raw, 99)
    return point


async def calls_per_second(rates: list[float], seconds: float) -> list[dict]:
    out = []
    for rate in rates:
        phase(f"limits: {rate:g} calls/s")
        started = time.monotonic()
        point = _row(await scale(500, 10, 490, int(rate * seconds), rate))
        point["wall"] = time.monotonic() - started
        print(json.dumps({"sweep": "rate", **point}), flush=True)
        out.append(point)
    return out


async def clients(counts: list[int], rate: float, seconds: float) -> list[dict]:
    out = []
    for count in counts:
        phase(f"limits: {count} clients")
        point = _row(await scale(500, 10, count - 10, int(rate * seconds), rate))
        print(json.dumps({"sweep": "clients", **point}), flush=True)
        out.append(point)
    return out


async def extensions(counts: list[int]) -> list[dict]:
    out = []
    for count in counts:
        phase(f"limits: {count} extensions")
        started = time.monotonic()
        point = await memory(count, 1000)
        point["wall"] = time.monotonic() - started
        print(json.dumps({"sweep": "extensions", **point}), flush=True)
        out.append(point)
    return out


async def subscribing(count: int) -> dict:
    """Seconds to subscribe `count` extensions (endpoint + device state) on one link, the way
    astcti does (JSON arrays up to SUBSCRIBE_BODY_MAX bytes) and the way it did (100 sources
    per request in the query string), each on its own Stasis application of the same lab."""
    phase(f"limits: subscribing {count} extensions")
    extras = [str(1000 + i) for i in range(count - 4)]
    lab = Lab()
    lab.config.extra_extensions = extras
    lab.up(phones="none")
    out: dict = {"sweep": "subscribe", "extensions": count}
    try:
        sources = [f"{kind}:PJSIP/{e}" for e in [*lab.config.phones, *extras]
                   for kind in ("endpoint", "deviceState")]
        for way in ("json", "query100"):
            c = lab.config
            link = AsteriskLink(LinkConfig("acti_tlink_98", "127.0.0.1", c.ari_port,
                                           f"astcti-sub-{way}", c.ari_user, c.ari_password),
                                heartbeat=5)
            link.start()
            try:
                assert await link.wait_up(60), link.last_error
                started = time.monotonic()
                if way == "json":
                    await link.subscribe(sources)
                    out["json_requests"] = len(list(subscribe_batches(sources)))
                else:
                    for i in range(0, len(sources), 100):
                        await link.rest.call("applications", "subscribe",
                                             applicationName=link.config.app,
                                             eventSource=",".join(sources[i:i + 100]))
                    out["query100_requests"] = -(-len(sources) // 100)
                out[f"{way}_s"] = time.monotonic() - started
            finally:
                await link.stop()
    finally:
        lab.down()
    print(json.dumps(out), flush=True)
    return out


def table(rows: list[dict], first: str, label: str) -> str:
    """CPU per *answered* call: past what the box can take, calls fail before astcti sees them."""
    lines = [f"| {label} | calls answered | added p50 ms | added p99 ms | astcti CPU per answered"
             " call ms | Asterisk CPU per answered call ms | astcti RSS MB | every client"
             " complete |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        share = r["calls"] / max(r["answered"], 1)
        lines.append(f"| {r[first]:g} | {r['answered']} of {r['calls']} |"
                     f" {r['added_p50']:+.1f} | {r['added_p99']:+.1f} |"
                     f" {r['cpu_per_call_ms'] * share:.2f} |"
                     f" {r['asterisk_cpu_per_call_ms'] * share:.2f} |"
                     f" {r['rss_after'] / 1024:.0f} | {'yes' if r['complete'] else 'NO'} |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.perf.limits")
    parser.add_argument("--rates", default="20,40,80,120")
    parser.add_argument("--clients", default="1000,2000,5000")
    parser.add_argument("--extensions", default="5000,10000,20000")
    parser.add_argument("--subscribe", default="20000",
                        help="extension counts whose subscription is timed both ways")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    by_rate = await calls_per_second([float(r) for r in args.rates.split(",") if r],
                                      args.seconds)
    by_clients = await clients([int(c) for c in args.clients.split(",") if c], 20.0,
                               args.seconds)
    by_ext = await extensions([int(e) for e in args.extensions.split(",") if e])
    by_sub = [await subscribing(int(n)) for n in args.subscribe.split(",") if n]
    for r in by_clients:
        r["clients_n"] = r["clients"]
    print(table(by_rate, "rate", "calls/s"))
    print()
    print(table(by_clients, "clients_n", "clients"))
    print()
    print("| extensions | clients | served after (s) | RSS idle MB | RSS with clients MB |\n"
          "| --- | --- | --- | --- | --- |")
    for r in by_ext:
        print(f"| {r['extensions']} | {r['clients']} | {r['ready_s']:.1f} |"
              f" {r['rss_idle'] / 1024:.0f} | {r['rss_clients'] / 1024:.0f} |")
    print()
    print("| extensions | sources | JSON arrays: requests, s | 100 per query string: requests,"
          " s |\n| --- | --- | --- | --- |")
    for r in by_sub:
        print(f"| {r['extensions']} | {2 * r['extensions']} | {r['json_requests']},"
              f" {r['json_s']:.1f} | {r['query100_requests']}, {r['query100_s']:.1f} |")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("limits: the lab needs root")
    asyncio.run(main())
