"""SIPp as desk phones (UAS) and customers (UAC), scripted from small generated scenarios."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_UAS_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="astcti lab phone">
  <recv request="INVITE" crlf="true" rrs="true">{capture}</recv>
  <send><![CDATA[
SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
"""

_REPLY = """  <send{attrs}><![CDATA[
SIP/2.0 {status}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
"""

_OK_SDP = """  <send{attrs}><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=phone 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

]]></send>
"""

_IN_DIALOG_OK = """  <send next="{next}"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
"""

_IN_DIALOG_OK_SDP = """  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=phone 53655765 2353687638 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

]]></send>
"""

TALK_ROUNDS = 16


def talk_loop(bye_attrs: str, prefix: str = "") -> str:
    """Wait for BYE while answering in-dialog re-INVITE/UPDATE/INFO/NOTIFY (connected line
    updates, hold, DTMF as SIP INFO). Unrolled into rounds: SIPp does not restart a recv
    timeout after jumping back to it, so each request moves on to the next round; the timeout
    is on every recv of a round because SIPp waits on the first (optional) one."""
    out = []
    for i in range(TALK_ROUNDS):
        nxt = f"{prefix}talk{i + 1}" if i + 1 < TALK_ROUNDS else f"{prefix}byewait"
        out.append(f'''  <label id="{prefix}talk{i}"/>
  <recv request="INVITE" optional="true"{bye_attrs} next="{prefix}reinvite{i}"/>
  <recv request="UPDATE" optional="true"{bye_attrs} next="{prefix}ok{i}"/>
  <recv request="INFO" optional="true"{bye_attrs} next="{prefix}ok{i}"/>
  <recv request="NOTIFY" optional="true"{bye_attrs} next="{prefix}ok{i}"/>
  <recv request="BYE"{bye_attrs} next="{prefix}byereceived"/>
  <label id="{prefix}reinvite{i}"/>
''' + _IN_DIALOG_OK_SDP + f'''  <recv request="ACK" next="{nxt}"/>
  <label id="{prefix}ok{i}"/>
''' + _IN_DIALOG_OK.format(next=nxt))
    out.append(f'''  <label id="{prefix}byewait"/>
  <recv request="BYE"{bye_attrs} next="{prefix}byereceived"/>
  <label id="{prefix}byereceived"/>
''' + _IN_DIALOG_OK.format(next="end"))
    return "".join(out)


_CANCELLED = """  <label id="cancelled"/>
""" + _REPLY.format(attrs="", status="200 OK") + """  <send><![CDATA[
SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
CSeq: [last_cseq_number] INVITE
Content-Length: 0

]]></send>
  <recv request="ACK" next="end"/>
"""

_HANGUP_BY_PHONE = """  <label id="hangup"/>
  <send><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 10 BYE
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" next="end"/>
"""


def _phone_reinvite(cseq: int, direction: str) -> str:
    """The phone puts the call on hold (sendonly) or takes it back (sendrecv) itself."""
    return f'''  <send retrans="500"><![CDATA[
INVITE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: {cseq} INVITE
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=phone 53655765 {2353687640 + cseq} IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a={direction}

]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: {cseq} ACK
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
'''


def _phone_refer(cseq: int, target: str) -> str:
    """The phone transfers the call itself (blind transfer: SIP REFER)."""
    return f'''  <send retrans="500"><![CDATA[
REFER [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: {cseq} REFER
Contact: <sip:[service]@[local_ip]:[local_port]>
Refer-To: <sip:{target}@[remote_ip]:[remote_port]>
Referred-By: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="202"/>
'''


def _phone_invite(cseq: int, target: str) -> str:
    """The phone places a second call of its own (a second dialog: SIPp keeps it in this call
    because its Call-ID ends with `///` + the first dialog's Call-ID)."""
    return f'''  <send retrans="500"><![CDATA[
INVITE sip:{target}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag02[call_number]
To: <sip:{target}@[remote_ip]:[remote_port]>
Call-ID: atx///[call_id]
CSeq: {cseq} INVITE
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=phone 53655766 2353687650 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200">
    <action><ereg regexp=";tag=([^;> ]+)" search_in="hdr" header="To:" check_it="true"
                  assign_to="atxjunk,atxtag"/></action>
  </recv>
  <send><![CDATA[
ACK sip:{target}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag02[call_number]
[last_To:]
Call-ID: atx///[call_id]
CSeq: {cseq} ACK
Contact: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
'''


def _phone_refer_replaces(cseq: int, target: str) -> str:
    """Attended transfer: REFER on the first dialog, replacing the phone's second dialog
    (RFC 3891: to-tag = the far side's tag of that dialog, from-tag = the phone's)."""
    replaces = ("atx%2F%2F%2F[call_id]%3Bto-tag%3D[$atxtag]"
                "%3Bfrom-tag%3D[pid]SIPpTag02[call_number]")
    return f'''  <send retrans="500"><![CDATA[
REFER [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[service]@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
Call-ID: [call_id]
CSeq: {cseq} REFER
Contact: <sip:[service]@[local_ip]:[local_port]>
Refer-To: <sip:{target}@[remote_ip]:[remote_port]?Replaces={replaces}>
Referred-By: <sip:[service]@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="202"/>
'''


def _after_transfer(rounds: int = 8, wait_ms: int = 4000) -> str:
    """After a REFER: answer NOTIFYs (transfer progress), re-INVITEs and the BYEs of both
    dialogs until the PBX stops sending (Asterisk hangs up the transferring phone's legs)."""
    out = []
    for i in range(rounds):
        nxt = f"xfer{i + 1}" if i + 1 < rounds else "end"
        attrs = f' timeout="{wait_ms}" ontimeout="end"'
        out.append(f'''  <label id="xfer{i}"/>
  <recv request="NOTIFY" optional="true"{attrs} next="xferok{i}"/>
  <recv request="INVITE" optional="true"{attrs} next="xferre{i}"/>
  <recv request="BYE"{attrs} next="xferok{i}"/>
  <label id="xferre{i}"/>
''' + _IN_DIALOG_OK_SDP + f'''  <recv request="ACK" next="{nxt}"/>
  <label id="xferok{i}"/>
''' + _IN_DIALOG_OK.format(next=nxt))
    return "".join(out)


_OOB_NOTIFY = """  <recv request="NOTIFY" optional="true" next="oob"><action>
    <ereg regexp="talk" search_in="hdr" header="Event:" check_it="false" assign_to="istalk"/>
    <ereg regexp="x-astcti-lift" search_in="hdr" header="Event:" check_it="false"
          assign_to="islift"/>
  </action></recv>
"""

_OUT_OF_DIALOG = """  <label id="oob"/>
  <nop test="islift" next="lift"/>
  <nop test="istalk" next="{talk}"/>
  <label id="refuse"/>
""" + _REPLY.format(attrs="", status="489 Bad Event").replace("[last_To:];tag=[pid]SIPpTag01[call_number]", "[last_To:];tag=[pid]SIPpTag09[call_number]") + """  <nop next="oobend"/>
  <label id="lift"/>
  <nop><action><assign assign_to="lift" value="1"/></action></nop>
""" + _REPLY.format(attrs="", status="200 OK").replace("[last_To:];tag=[pid]SIPpTag01[call_number]", "[last_To:];tag=[pid]SIPpTag09[call_number]") + """  <label id="oobend"/>
  <nop next="done"/>
"""


@dataclass(frozen=True)
class Phone:
    """How a SIPp desk phone behaves on each incoming call.

    Besides answering, rejecting and ringing, it models what CTI depends on: whether it honours
    auto-answer headers (`auto_answer`) or a NOTIFY `Event: talk` (`talk`), whether it takes a
    second call (`single_line`: 486 while one is ringing or up), and its own hold (re-INVITE
    sendonly) and transfer buttons (REFER: blind, or attended with Replaces). A phone that rings
    (`answer_after_ms=None`) is answered when the test lifts its handset
    (`tests.lab.sipp.lift_handset`) and stops ringing on CANCEL.
    """

    answer_after_ms: int | None = 1000  # None: ring until cancelled or lifted
    reject: int | None = None  # e.g. 486 to answer busy
    hangup_after_ms: int | None = None  # phone hangs up itself after this talk time
    auto_answer: bool = False  # answer at once an INVITE whose Call-Info says answer-after=0
    talk: bool = False  # a NOTIFY with Event: talk takes the ringing call off-hook
    single_line: bool = False  # one call at a time: a second INVITE gets 486 Busy Here
    hold_after_ms: int | None = None  # the phone holds the call itself (re-INVITE sendonly)...
    hold_ms: int = 1500  # ... and takes it back (sendrecv) after this long
    refer_to: str | None = None  # the phone blind-transfers the call to this number...
    refer_after_ms: int = 1500  # ... this long after answering, then hangs up
    attended_to: str | None = None  # attended transfer: hold, call this number, REFER+Replaces
    attended_after_ms: int = 1000  # ... this long after answering (then talks as long again)
    sdp_port: int | None = None  # RTP port its SDP announces (a test's own RTP receiver)
    idle_after_ms: int = 0  # single-line: still busy (486) this long after a cancelled ring

    @property
    def rings(self) -> bool:
        """Rings until something answers it (the handset, a NOTIFY talk)."""
        return self.answer_after_ms is None


#: The lab's phone types, selectable per extension (`python -m tests.lab up --phone 101=TYPE`).
PHONE_TYPES: dict[str, Phone] = {
    # a desk phone honouring auto-answer headers, several lines (the lab's default agent)
    "desk": Phone(answer_after_ms=300, auto_answer=True),
    # one call at a time, auto-answer honoured while idle
    "single-line": Phone(answer_after_ms=300, auto_answer=True, single_line=True),
    # ignores auto-answer headers: rings until the handset is lifted
    "no-auto-answer": Phone(answer_after_ms=None),
    # goes off-hook on NOTIFY Event: talk (Yealink, Snom, Polycom style), single line
    "talk": Phone(answer_after_ms=None, talk=True, single_line=True),
    # answered by hand after a second (a user), the lab's plain extension
    "user": Phone(answer_after_ms=1000),
}


def uas_scenario(phone: Phone) -> str:
    """Generated scenario XML for one phone behaviour."""
    actions = []
    in_dialog = phone.hangup_after_ms is not None or phone.hold_after_ms is not None or \
        phone.refer_to is not None or phone.attended_to is not None
    if in_dialog:  # the requests the phone sends in the dialog need the caller's From
        actions.append('<ereg regexp=".*" search_in="hdr" header="From:"'
                       ' assign_to="remote_from"/>')
    if phone.auto_answer:
        actions.append('<ereg regexp="answer-after=0" search_in="hdr" header="Call-Info:"'
                       ' check_it="false" assign_to="autoanswer"/>')
    capture = f"\n    <action>{''.join(actions)}</action>\n  " if actions else ""
    head = _UAS_HEAD.replace("{capture}", capture)
    globals_ = ["lift"] + (["busy"] if phone.single_line else [])
    # out-of-dialog NOTIFYs (talk, the test lifting the handset) start a "call" of their own
    head = head.replace('<scenario name="astcti lab phone">\n',
                        '<scenario name="astcti lab phone">\n'
                        f'  <Global variables="{",".join(globals_)}"/>\n'
                        + _OOB_NOTIFY)
    parts = [head]
    if phone.single_line:
        parts.append('  <nop><action><test assign_to="inuse" variable="busy" compare="equal"'
                     ' value="1"/></action></nop>\n  <nop test="inuse" next="secondline"/>\n'
                     '  <nop><action><assign assign_to="busy" value="1"/></action></nop>\n')
    if phone.reject is not None:
        reason = {486: "Busy Here", 480: "Temporarily Unavailable", 603: "Decline"}.get(
            phone.reject, "Rejected")
        parts.append(_REPLY.format(attrs="", status=f"{phone.reject} {reason}"))
        parts.append('  <recv request="ACK" next="end"/>\n')
    else:
        parts.append(_REPLY.format(attrs="", status="180 Ringing"))
        if phone.auto_answer:
            parts.append('  <nop test="autoanswer" next="answer"/>\n')
        if phone.rings:  # poll the handset (and talk) while ringing
            parts.append('''  <label id="ring"/>
  <recv request="CANCEL" timeout="100" ontimeout="ringcheck" next="cancelled"/>
  <label id="ringcheck"/>
  <nop><action><test assign_to="lifted" variable="lift" compare="equal" value="1"/></action></nop>
  <nop test="lifted" next="answer"/>
  <nop next="ring"/>
''')
        else:
            parts.append(f'  <recv request="CANCEL" optional="false"'
                         f' timeout="{max(phone.answer_after_ms or 1, 1)}"'
                         ' ontimeout="answer" next="cancelled"/>\n')
        parts.append('  <label id="answer"/>\n'
                     '  <nop><action><assign assign_to="lift" value="0"/></action></nop>\n')
        parts.append(_OK_SDP.format(attrs=""))
        parts.append('  <recv request="ACK"/>\n')
        parts.append(_in_call(phone))
        cancelled = _CANCELLED
        if phone.idle_after_ms:  # some phones take a moment to be idle again
            cancelled = cancelled.replace(
                '<recv request="ACK" next="end"/>',
                f'<recv request="ACK"/>\n  <pause milliseconds="{phone.idle_after_ms}"/>'
                '\n  <nop next="end"/>')
        parts.append(cancelled)
    parts.append('  <label id="end"/>\n')
    if phone.single_line:
        parts.append('  <nop><action><assign assign_to="busy" value="0"/></action></nop>\n')
    parts.append('  <nop next="done"/>\n')
    if phone.single_line:  # a second call while one is up: busy, the first call untouched
        parts.append('  <label id="secondline"/>\n'
                     + _REPLY.format(attrs="", status="486 Busy Here").replace(
                         "SIPpTag01", "SIPpTag03")
                     + '  <recv request="ACK" next="done"/>\n')
    parts.append(_OUT_OF_DIALOG.replace("{talk}", "lift" if phone.talk else "refuse"))
    if phone.attended_to is not None:
        parts.append('  <Reference variables="atxjunk"/>\n')
    parts.append('  <label id="done"/>\n</scenario>\n')
    xml = "".join(parts)
    if phone.sdp_port is not None:
        xml = xml.replace("m=audio [media_port]", f"m=audio {phone.sdp_port}")
    return xml


def _in_call(phone: Phone) -> str:
    """From the answer to the end of the call: the phone's own actions, then BYE."""
    parts = []
    bye_attrs = ""
    if phone.hangup_after_ms is not None:
        bye_attrs = f' timeout="{phone.hangup_after_ms}" ontimeout="hangup"'
    if phone.hold_after_ms is not None:
        parts.append(talk_loop(f' timeout="{phone.hold_after_ms}" ontimeout="phonehold"',
                               prefix="a"))
        parts.append('  <label id="phonehold"/>\n' + _phone_reinvite(2, "sendonly"))
        parts.append(talk_loop(f' timeout="{phone.hold_ms}" ontimeout="phoneunhold"',
                               prefix="b"))
        parts.append('  <label id="phoneunhold"/>\n' + _phone_reinvite(3, "sendrecv"))
    if phone.refer_to is not None:
        parts.append(talk_loop(f' timeout="{phone.refer_after_ms}" ontimeout="phonerefer"',
                               prefix="r"))
        parts.append('  <label id="phonerefer"/>\n' + _phone_refer(4, phone.refer_to))
        bye_attrs = ' timeout="1500" ontimeout="hangup"'  # NOTIFYs, then the phone hangs up
    if phone.attended_to is not None:
        parts.append(talk_loop(f' timeout="{phone.attended_after_ms}" ontimeout="atxhold"',
                               prefix="h"))
        parts.append('  <label id="atxhold"/>\n' + _phone_reinvite(5, "sendonly"))
        parts.append(_phone_invite(1, phone.attended_to))
        parts.append(talk_loop(f' timeout="{phone.attended_after_ms}" ontimeout="atxrefer"',
                               prefix="t"))
        parts.append('  <label id="atxrefer"/>\n' + _phone_refer_replaces(6, phone.attended_to))
        parts.append(_after_transfer())
        return "".join(parts)
    parts.append(talk_loop(bye_attrs))
    if phone.hangup_after_ms is not None or phone.refer_to is not None:
        parts.append(_HANGUP_BY_PHONE)
    return "".join(parts)


def lift_handset(port: int, ext: str = "phone") -> None:
    """The user picks up the ringing phone on `port` (told out of band, as a SIP request the
    phone understands; Asterisk is not involved)."""
    import socket
    import uuid

    tag = uuid.uuid4().hex[:10]
    msg = (f"NOTIFY sip:{ext}@127.0.0.1:{port} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{tag}\r\n"
           f"From: <sip:lab@127.0.0.1:9>;tag={tag}\r\nTo: <sip:{ext}@127.0.0.1:{port}>\r\n"
           f"Call-ID: lift-{tag}\r\nCSeq: 1 NOTIFY\r\nEvent: x-astcti-lift\r\n"
           "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(msg.encode(), ("127.0.0.1", port))


_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="astcti lab caller">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" next="answered">
    <action><ereg regexp=".*" search_in="hdr" header="To:" assign_to="remote_to"/></action>
  </recv>
  <label id="answered"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
[routes]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
{talk}  <label id="hangup"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "{name}" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: [$remote_to]
[routes]
Call-ID: [call_id]
CSeq: 2 BYE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200" next="end"/>
  <label id="end"/>
</scenario>
"""


def uac_scenario(caller: str, talk_ms: int, name: str = "", audio: Path | None = None) -> str:
    """`audio`: a raw G.711 u-law file the caller streams (looped) once answered, so the far
    end hears something (voicemail keeps only messages with audio in them)."""
    talk = talk_loop(f' timeout="{max(talk_ms, 1)}" ontimeout="hangup"')
    if audio is not None:
        talk = (f'  <nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>\n') + talk
    return _UAC.replace("{talk}", "{talk_block}").format(
        caller=caller, talk_ms=max(talk_ms, 1), name=name or caller, talk_block="{talk_block}"
    ).replace("{talk_block}", talk)


def tone_file(workdir: Path, seconds: int = 3) -> Path:
    """A 440 Hz tone as raw G.711 u-law (8 kHz), made once per work directory."""
    import math

    path = workdir / "tone.ulaw"
    if path.exists():
        return path

    def ulaw(sample: int) -> int:
        sign = 0x80 if sample < 0 else 0
        magnitude = min(abs(sample), 32635) + 0x84
        exponent, mask = 7, 0x4000
        while exponent > 0 and not magnitude & mask:
            exponent, mask = exponent - 1, mask >> 1
        return ~(sign | exponent << 4 | (magnitude >> (exponent + 3)) & 0x0F) & 0xFF

    path.write_bytes(bytes(ulaw(int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
                           for i in range(8000 * seconds)))
    return path


class SippProcess:
    """One SIPp process; its message trace is kept for the test to inspect."""

    def __init__(self, args: list[str], workdir: Path, tag: str) -> None:
        self.workdir = workdir
        self.tag = tag
        self.message_file = workdir / f"{tag}.messages.log"
        self.error_file = workdir / f"{tag}.errors.log"
        self.args = args + ["-nostdin", "-trace_msg", "-message_file", str(self.message_file),
                            "-trace_err", "-error_file", str(self.error_file)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SippProcess:
        self.message_file.unlink(missing_ok=True)
        self.error_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(["sipp", *self.args], cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def listen(self, port: int) -> SippProcess:
        """Start a phone (UAS) and return once it listens on `port`: an INVITE sent before
        SIPp binds is only seen at its first retransmission, 0.5 s later. A phone that dies
        at start is stopped and named in the error."""
        wait_port_free(port)  # a SIPp just stopped may still hold it
        self.start()
        try:
            self.wait_listening(port)
        except RuntimeError:
            self.stop()
            raise
        return self

    def wait_listening(self, port: int, timeout: float = 10.0) -> None:
        """Until this SIPp has its UDP socket bound to `port`, read from the kernel's socket
        table (/proc). Never by binding the port to see whether it is taken: a probe that holds
        the port for a moment when SIPp binds it makes SIPp exit ("Unable to bind main socket",
        exit 254), and the phone would be dead without anyone knowing. A SIPp that exits or
        does not bind in time is an error naming its own error line."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"SIPp {self.tag} exited at start (exit"
                                   f" {self.proc.returncode if self.proc else None}):"
                                   f" {self.last_error() or 'no error logged'}")
            if port in udp_ports_of(self.pid):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"SIPp {self.tag} did not bind UDP port {port} within"
                                   f" {timeout:.0f} s: {self.last_error() or 'no error logged'}")
            time.sleep(0.02)

    def last_error(self) -> str:
        """The last line of SIPp's error log ('' if none)."""
        try:
            lines = self.error_file.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return lines[-1].split(": ", 1)[-1] if lines else ""

    def messages(self) -> str:
        try:
            return self.message_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sent(self, start: str) -> list[str]:
        """Messages SIPp sent that start with `start` (e.g. "SIP/2.0 486")."""
        out = []
        for block in self.messages().split("----------------------------------------------- ")[1:]:
            _head, _, body = block.partition("\n")
            kind, _, body = body.partition("\n")
            if "message sent" in kind and body.lstrip().startswith(start):
                out.append(body.lstrip())
        return out

    def received(self, method: str) -> list[str]:
        """Messages (requests or responses, e.g. "INVITE" or "SIP/2.0 200") SIPp received."""
        out = []
        for block in self.messages().split("----------------------------------------------- ")[1:]:
            head, _, body = block.partition("\n")
            kind, _, body = body.partition("\n")
            if "message received" not in kind:
                continue
            if body.lstrip().startswith(method):
                out.append(body.lstrip())
        return out


def udp_ports_of(pid: int) -> set[int]:
    """Local UDP ports of the sockets process `pid` holds (its fds matched by inode against
    /proc/net/udp and udp6): what it has bound, seen without touching the ports."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_port_free(port: int, timeout: float = 5.0) -> None:
    """SIPp binds UDP ports; give a just-stopped instance time to release its port."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            s.close()


def phone_process(ext: str, port: int, phone: Phone, workdir: Path, sip_port: int,
                  media_port: int) -> SippProcess:
    scenario = workdir / f"phone-{ext}.xml"
    scenario.write_text(uas_scenario(phone))
    args = ["-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-mp", str(media_port),
            "-s", ext, f"127.0.0.1:{sip_port}"]
    return SippProcess(args, workdir, f"phone-{ext}")


def caller_process(local_port: int, caller: str, dest: str, workdir: Path, sip_port: int,
                   media_port: int, talk_ms: int = 2000, calls: int = 1, rate: float = 1.0,
                   name: str = "", tag: str | None = None, audio: bool = False) -> SippProcess:
    tag = tag or f"caller-{local_port}"
    scenario = workdir / f"{tag}.xml"
    scenario.write_text(uac_scenario(caller, talk_ms, name,
                                     tone_file(workdir) if audio else None))
    args = ["-sf", str(scenario), "-i", "127.0.0.1", "-p", str(local_port), "-mp",
            str(media_port), "-s", dest, "-m", str(calls), "-r", str(rate),
            f"127.0.0.1:{sip_port}"]
    return SippProcess(args, workdir, tag)
