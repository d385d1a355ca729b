"""Generate docs/protocol.md from the request declarations and the event catalogue.

`python -m astcti.api.docs > docs/protocol.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from astcti.api.protocol import REQUESTS
from astcti.cti.events import CATALOGUE, EVENTTYPES, CtiEvent

INTRO = Path(__file__).with_name("protocol_intro.md")


def _field_line(f) -> str:
    limits = []
    if f.choices:
        limits.append("one of " + ", ".join(f"`{c}`" for c in f.choices))
    if f.type == "string" and not f.choices:
        limits.append(f"at most {f.max_length} chars")
    if f.minimum is not None:
        limits.append(f">= {f.minimum}")
    if f.maximum is not None:
        limits.append(f"<= {f.maximum}")
    req = "required" if f.required else "optional"
    text = f"| `{f.name}` | {f.type} | {req} | {f.doc} | {'; '.join(limits)} |"
    return text


def _access_line(spec) -> str:
    from astcti.api.authz import ACCESS_DOCS, CONTROL, MONITOR

    if callable(spec.access):
        reads, writes = ACCESS_DOCS[MONITOR], ACCESS_DOCS[CONTROL]
        text = f"reading: {reads}; changing: {writes}"
    else:
        text = ACCESS_DOCS[spec.access]
    if spec.dials:
        text += (f"; `{'`, `'.join(spec.dials)}` must pass the dial policy of the user's role"
                 " (parameter `acti_dial_<role>`)")
    return text


#: The astCTI author's request words next to astcti's own: (author's request, its fields,
#: astcti's request, its fields, note). Both are declared requests (or fields of one): the
#: generator checks every name below against the declarations.
VOCABULARY: tuple[tuple[str, str, str, str, str], ...] = (
    ("myextension", "", "", "", "the client's extension, from its address (`add ipextnmap`)"),
    ("login", "extension agentid passwd", "acdlogin", "extension agentid password",
     "`passwd` checked when the agent has one (`passwd agent`)"),
    ("logout", "extension agentid", "acdlogout", "extension agentid", ""),
    ("setstate", "extension agentid passwd state reasoncode", "acdsetstate",
     "extension agentid state reasoncode password",
     "auto / manual = ready (auto-in / manual-in), aux = notready, acw"),
    ("queryagentstate", "extension", "acdgetstate", "extension",
     "`skillmode` (\"null\" / auto / manual / acw / aux), `reasoncode` (\"0\": none),"
     " `talkstate` (idle / call)"),
    ("querydeviceinfo", "extension", "acdgetstate", "extension",
     "`associateddevice`: the agent id (empty: none)"),
    ("snapshot", "extension", "snapshot", "extension", "`numcall` next to `calls`"),
    ("answer", "extension", "answer", "extension callid", "the ringing call"),
    ("hold", "extension", "hold", "extension callid", "the active call"),
    ("retrieve", "extension", "retrieve", "extension callid", "the held call"),
    ("hangup", "extension", "hangup", "extension callid",
     "the active call (else the one being set up, else the ringing one)"),
    ("reconnect", "extension", "reconnect", "extension activecallid heldcallid",
     "the active and the held call"),
    ("makecall", "extension destination", "makecall", "extension destination", "the same"),
    ("consultation", "extension destination", "consultation", "extension callid destination",
     "from the active call"),
    ("transfer", "extension destination", "transfer",
     "extension activecallid heldcallid | callid destination",
     "completes a held consultation if there is one, else single-step"),
    ("conference", "extension destination", "conference",
     "extension activecallid heldcallid | callid destination", "as transfer"),
    ("dropparty", "extension party", "dropparty", "extension callid party",
     "releases one party of a conference"),
    ("userdata", "extension type", "userdata", "extension callid data",
     "`type: alert` adds `cli`, `calling`, `called` of the current call"),
    ("dtmf", "extension dtmf", "dtmf", "extension callid digits", ""),
)


def _vocabulary() -> list[str]:
    for theirs, their_fields, ours, our_fields, _note in VOCABULARY:
        for name, fields in ((theirs, their_fields), (ours, our_fields)):
            if not name:
                continue
            declared = {f.name for f in REQUESTS[name].fields}
            unknown = set(fields.replace("|", " ").split()) - declared
            assert not unknown, f"docs vocabulary: {name} has no field {unknown}"
    out = ["## The astCTI author's vocabulary", "",
           "The clients the original astCTI's author wrote (his WebSocket softphone for CRMs)"
           " speak their own words: astcti answers them on every listener, next to its own."
           " Fields are strings; `id` may be a number and comes back as sent. A failure is"
           " always `result: \"error\"` with the words in `error`.", "",
           "| the author's request | its fields | astcti's request | its fields | notes |",
           "| --- | --- | --- | --- | --- |"]
    for theirs, their_fields, ours, our_fields, note in VOCABULARY:
        out.append(f"| `{theirs}` | {_fields_text(their_fields)} | "
                   f"{f'`{ours}`' if ours else '-'} | {_fields_text(our_fields)} | {note} |")
    out += ["", "Events carry both: `event` (astcti's name) and `eventtype` (the author's),"
                " with `calling`, `called` and `origcalling` (the original caller when the call"
                " was transferred, diverted or queued to the extension; empty otherwise):", "",
            "| eventtype | astcti's event |", "| --- | --- |"]
    out += [f"| `{word}` | {meaning} |" for word, meaning in EVENTTYPES.items()]
    out += ["", "Which listeners accept which: every listener (WebSocket `astctiws`, TCP"
                " `astctiapi`, REST `astctirest` in both its forms) accepts both vocabularies,"
                " through the one dispatcher. A `token` listener (the default) needs a login"
                " first, then the user acts on the extensions its role allows (see \"Who may do"
                " what\"). An `auth=none`"
                " listener takes no login: it admits the addresses of its `allow` list and"
                " knows each client by its address, seated at one extension by the ipextnmap;"
                " such a client acts on that extension only.", ""]
    return out


def _fields_text(fields: str) -> str:
    return " \\| ".join(" ".join(f"`{f}`" for f in part.split())
                          for part in fields.split("|")) if fields else "-"


def render() -> str:
    import astcti.api.requests  # noqa: F401

    out = [INTRO.read_text().rstrip(), "", *_vocabulary(), "## Requests", ""]
    groups: dict[str, list] = {}
    for spec in REQUESTS.values():
        groups.setdefault(spec.group, []).append(spec)
    for group, specs in groups.items():
        out += [f"### {group.capitalize()}", ""]
        for spec in specs:
            out += [f"#### `{spec.name}`", "", spec.doc, ""]
            if not spec.login:
                out += ["Allowed before login.", ""]
            else:
                out += [f"Who may: {_access_line(spec)}.", ""]
            if spec.fields:
                out += ["| field | type | | meaning | limits |", "| --- | --- | --- | --- | --- |"]
                out += [_field_line(f) for f in spec.fields]
                out.append("")
            if spec.response:
                out += ["Response fields: " + "; ".join(f"`{k}`: {v}" for k, v in
                                                         spec.response.items()) + ".", ""]
            if spec.resource:
                out += [f"REST resource: `{spec.resource[0]} {spec.resource[1]}`.", ""]
    out += ["## Events", "",
            "Every event has `msgtype` = `event`, `event`, `extension`, `callid`, `timestamp`"
            " (ISO-8601, from Asterisk) and `seq` (per extension, for `resume`).", ""]
    common = {f.name for f in dataclasses.fields(CtiEvent)}
    for cls in CATALOGUE:
        fields = [f.name for f in dataclasses.fields(cls) if f.name not in common]
        doc = (cls.__doc__ or "").strip()
        word = _eventtype_of(cls)
        out.append(f"- `{cls.NAME}`{f' (eventtype `{word}`)' if word else ''}: {doc}" + (
            f" Fields: {', '.join(f'`{x}`' for x in fields)}." if fields else ""))
    return "\n".join(out) + "\n"


def _eventtype_of(cls: type[CtiEvent]) -> str:
    if cls.NAME == "delivered":
        return "offer` / `alert"
    return cls.EVENTTYPE


if __name__ == "__main__":
    sys.stdout.write(render())
