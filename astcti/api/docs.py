"""Generate docs/protocol.md from the request declarations and the event catalogue.

`python -m astcti.api.docs > docs/protocol.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from astcti.api.protocol import REQUESTS
from astcti.cti.events import CATALOGUE, CtiEvent

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


def render() -> str:
    import astcti.api.requests  # noqa: F401

    out = [INTRO.read_text().rstrip(), "", "## Requests", ""]
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
        out.append(f"- `{cls.NAME}`: {doc}" + (f" Fields: {', '.join(f'`{x}`' for x in fields)}."
                                                if fields else ""))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
