"""Which numbers a role may dial: the toll-fraud guard of makecall, consultation and the
single-step transfer and conference.

A policy is a comma list of Asterisk-style dial patterns (the words PBX administrators already
use), read from the parameter of the caller's role (`acti_dial_agent`, `acti_dial_supervisor`,
`acti_dial_admin`):

- `internal`: any extension configured in astcti (`add extension`);
- `_` patterns: X = 0-9, Z = 1-9, N = 2-9, [1-5a] a set or range, `.` one or more and `!`
  zero or more dialable characters (0-9 * # +; unlike Asterisk, never `@` or letters, so a
  pattern cannot be stretched into `number@context`), e.g. `_0[1-7]X.` national numbers of
  trunk-prefix-0 plans;
- anything else: that exact number (e.g. `112`).

Nothing matches means refused: a number is dialled only when a pattern allows it. The refusal
names a pattern that would allow it, so the administrator's fix is one `update parameter`.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

#: internal extensions and national numbers of trunk-prefix-0 plans (0[1-7]: geographic and
#: mobile in FR, UK, BE, CH, IT fixed...); not 08/09 (special and premium rates), not 00/+
#: (international).
DEFAULT_POLICY = "internal,_0[1-7]X."
INTERNAL = "internal"
#: what `.` and `!` stand for: dialable characters only, so `_0X.` never matches `01@other`
#: (a context) or letters
DIGIT = r"[0-9*#+]"
PATTERN_CHARS = re.compile(r"^[0-9A-Za-z*#+_.@!\[\]-]{1,64}$")


class PolicyError(ValueError):
    """A policy text that cannot be read; the message names the bad entry."""


@dataclass(frozen=True)
class DialPolicy:
    """A parsed policy: `allows(number, extensions)`."""

    text: str
    internal: bool
    patterns: tuple[tuple[str, re.Pattern[str]], ...]

    def allows(self, number: str, extensions: Container[str]) -> bool:
        if self.internal and number in extensions:
            return True
        return any(regex.fullmatch(number) for _text, regex in self.patterns)


def _class(body: str, entry: str) -> str:
    if not body:
        raise PolicyError(f"dial pattern {entry!r}: empty [] set")
    out = []
    for i, ch in enumerate(body):
        if ch == "-" and 0 < i < len(body) - 1:
            out.append("-")
        elif ch.isalnum():
            out.append(ch)
        else:
            out.append(re.escape(ch))
    return "[" + "".join(out) + "]"


def compile_pattern(entry: str) -> re.Pattern[str]:
    """An Asterisk pattern (`_0[1-7]X.`) or an exact number, as a regular expression."""
    if not PATTERN_CHARS.match(entry):
        raise PolicyError(f"dial pattern {entry[:40]!r}: use digits, *#+ and, after _, X Z N"
                          " [..] . !")
    if not entry.startswith("_"):
        return re.compile(re.escape(entry))
    out, i, body = [], 1, entry
    while i < len(body):
        ch = body[i]
        if ch in "Xx":
            out.append("[0-9]")
        elif ch in "Zz":
            out.append("[1-9]")
        elif ch in "Nn":
            out.append("[2-9]")
        elif ch == ".":
            out.append(f"{DIGIT}+")
        elif ch == "!":
            out.append(f"{DIGIT}*")
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                raise PolicyError(f"dial pattern {entry!r}: [ without ]")
            out.append(_class(body[i + 1:end], entry))
            i = end
        elif ch == "]":
            raise PolicyError(f"dial pattern {entry!r}: ] without [")
        else:
            out.append(re.escape(ch))
        i += 1
    if len(out) == 0:
        raise PolicyError(f"dial pattern {entry!r}: nothing after _")
    return re.compile("".join(out))


def parse_policy(text: str) -> DialPolicy:
    """Parse a policy; PolicyError names the first bad entry. Empty: nothing may be dialled."""
    internal = False
    patterns: list[tuple[str, re.Pattern[str]]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        if entry.lower() == INTERNAL:
            internal = True
            continue
        patterns.append((entry, compile_pattern(entry)))
    return DialPolicy(text, internal, tuple(patterns))


def suggest(number: str) -> str:
    """A pattern that would allow `number` and its neighbours: its first digits then `X.`
    (`0044201234567` -> `_0044X.`); a short or unusual number exactly."""
    if len(number) <= 5 or not re.fullmatch(r"\+?[0-9]+", number):
        return number
    return f"_{number[:4]}X."
