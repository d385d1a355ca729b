"""Record the ARI event stream of lab scenarios, for the tracker's unit tests and the replay bench.

`python -m tests.lab.record` (lab up with --phones none) writes tests/cti/recordings/*.jsonl.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from astcti.pbx.link import AsteriskLink
from astcti.pbx.linkconfig import LinkConfig
from tests.lab.harness import Lab, LabConfig
from tests.lab.sipp import Phone, caller_process

OUT = Path(__file__).resolve().parents[1] / "cti" / "recordings"
SOURCES = [f"{kind}:PJSIP/{e}" for e in ("101", "102", "103", "104")
           for kind in ("endpoint", "deviceState")]


async def record_all(lab: Lab, name: str, scenario) -> None:
    """Call control scenarios: astcti's own stream (its Stasis app sees the bridge events an
    endpoint subscription does not). The lab's daemon must run with ASTCTI_ARI_TRACE set to
    .lab/ari-trace.jsonl (`ASTCTI_ARI_TRACE=... python -m tests.lab up`)."""
    trace = Path(lab.config.lab_dir) / "ari-trace.jsonl"
    if not trace.exists():
        raise SystemExit(f"{trace} missing: start the lab with ASTCTI_ARI_TRACE={trace}")
    start = trace.stat().st_size
    await scenario(lab)
    await asyncio.sleep(1.5)
    with open(trace) as fh:
        fh.seek(start)
        lines = fh.read()
    (OUT / f"{name}.jsonl").write_text(lines)
    print(name, lines.count("\n"), "events")


async def record(lab: Lab, name: str, scenario) -> None:
    if name in CONTROL:
        return await record_all(lab, name, scenario)
    c = lab.config
    events: list[dict] = []
    link = AsteriskLink(LinkConfig("rec", "127.0.0.1", c.ari_port, "astcti-rec", c.ari_user,
                                   c.ari_password), on_event=lambda _l, e: events.append(e))
    link.start()
    assert await link.wait_up(10)
    await link.subscribe(SOURCES)
    await scenario(lab)
    await asyncio.sleep(1.5)
    await link.stop()
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / f"{name}.jsonl", "w") as fh:
        for e in events:
            fh.write(json.dumps(e, sort_keys=True) + "\n")
    print(name, len(events), "events")


async def inbound_answered(lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=500))
    p = lab.call("101", caller="0912345678", talk_ms=1500)
    await asyncio.to_thread(p.wait, 30)
    lab.stop_phone("101")


async def internal_101_to_102(lab: Lab) -> None:
    lab.start_phone("102", Phone(answer_after_ms=500))
    p = caller_process(lab.config.phones["101"], "101", "102", lab.workdir, lab.config.sip_port,
                       media_port=6610, talk_ms=1500, tag="rec-101").start()
    await asyncio.to_thread(p.wait, 30)
    lab.stop_phone("102")


async def inbound_busy(lab: Lab) -> None:
    lab.start_phone("103", Phone(reject=486))
    p = lab.call("103", talk_ms=1000)
    await asyncio.to_thread(p.wait, 30)
    lab.stop_phone("103")


async def inbound_noanswer(lab: Lab) -> None:
    lab.start_phone("104", Phone(answer_after_ms=None))
    p = lab.call("104", talk_ms=1000)
    await asyncio.to_thread(p.wait, 40)
    lab.stop_phone("104")


async def inbound_caller_abandons(lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=None))
    p = lab.call("101", talk_ms=1000)
    await asyncio.sleep(2)
    p.stop()
    await asyncio.sleep(1)
    lab.stop_phone("101")


async def _internal(lab: Lab, callee: str, phone: Phone, wait: float = 30) -> None:
    lab.start_phone(callee, phone)
    p = caller_process(lab.config.phones["101"], "101", callee, lab.workdir, lab.config.sip_port,
                       media_port=6610, talk_ms=1500, tag="rec-101").start()
    await asyncio.to_thread(p.wait, wait)
    lab.stop_phone(callee)


async def internal_101_to_103_busy(lab: Lab) -> None:
    await _internal(lab, "103", Phone(reject=486))


async def internal_101_to_104_noanswer(lab: Lab) -> None:
    await _internal(lab, "104", Phone(answer_after_ms=None), wait=40)


async def queue_ivr_answered(lab: Lab) -> None:
    """Customer calls 601 (IVR sets ASTCTI_USERDATA), queue support rings member PJSIP/101."""
    lab.rx("queue add member PJSIP/101 to support")
    lab.start_phone("101", Phone(answer_after_ms=500))
    p = lab.call("601", talk_ms=1500)
    await asyncio.to_thread(p.wait, 30)
    lab.stop_phone("101")
    lab.rx("queue remove member PJSIP/101 from support")
# -- call control (astcti's daemon in the lab drives these through its Stasis app) ------------
async def _cti(lab: Lab):
    from astcti.client import CtiClient

    c = lab.config
    return await CtiClient.websocket(c.ws_url, c.astcti_user, c.astcti_password)


async def stasis_internal_101_to_102(lab: Lab) -> None:
    """101 dials 102; the dialplan hands the call to astcti, which dials and bridges."""
    lab.start_phone("102", Phone(answer_after_ms=500))
    p = lab.dial_from("101", "102", talk_ms=1500)
    await asyncio.to_thread(p.wait, 30)
    lab.stop_phone("102")


async def makecall_101_to_102(lab: Lab) -> None:
    lab.start_phone("101", Phone(answer_after_ms=200))
    lab.start_phone("102", Phone(answer_after_ms=500))
    cti = await _cti(lab)
    reply = await cti.request("makecall", extension="101", destination="102")
    await asyncio.sleep(2)
    await cti.request("hold", extension="101", callid=reply["callid"])
    await asyncio.sleep(1)
    await cti.request("retrieve", extension="101", callid=reply["callid"])
    await asyncio.sleep(1)
    await cti.request("hangup", extension="101", callid=reply["callid"])
    await asyncio.sleep(1)
    await cti.close()
    lab.stop_phone("101")
    lab.stop_phone("102")


CONTROL = ["stasis_internal_101_to_102", "makecall_101_to_102"]


async def main() -> None:
    lab = Lab(LabConfig.load())
    which = sys.argv[1:] or ["inbound_answered", "internal_101_to_102", "inbound_busy",
                             "inbound_noanswer", "inbound_caller_abandons",
                             "internal_101_to_103_busy", "internal_101_to_104_noanswer"]
    for name in which:
        await record(lab, name, globals()[name])


if __name__ == "__main__":
    asyncio.run(main())
