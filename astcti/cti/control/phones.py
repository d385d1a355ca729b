"""What astcti may ask of an agent's phone: auto-answer headers, NOTIFY Event: talk.

Per extension (`set extension NUM answer MODE`, default parameter `acti_answer`):
- talk: the phone goes off-hook on a SIP NOTIFY `Event: talk`; if it stays ringing, the call is
  re-offered with auto-answer headers;
- reoffer: `answer` rings the phone again with auto-answer headers (it answers by itself);
- none: only a person answers it; `answer` is refused with a clear error.
"""

from __future__ import annotations

from enum import Enum

from astcti.cti.directory import Extension

#: Auto-answer headers common desk phones honour (Polycom/Yealink/Snom/Grandstream/Cisco...).
AUTO_ANSWER_HEADERS = {
    "Call-Info": "<sip:127.0.0.1>;answer-after=0",
    "Alert-Info": "<http://127.0.0.1>;info=alert-autoanswer;delay=0",
    "Answer-Mode": "Auto",
    "P-Auto-answer": "normal",
}
#: How long a phone told to go off-hook (NOTIFY talk) may take before the call is re-offered.
TALK_WAIT_SECONDS = 3.0


class AnswerMode(str, Enum):
    TALK = "talk"
    REOFFER = "reoffer"
    NONE = "none"


def answer_mode(ext: Extension, default: str) -> AnswerMode:
    try:
        return AnswerMode(ext.answer or default)
    except ValueError:
        return AnswerMode.REOFFER


_AUTO_ANSWER_VARIABLES = {f"PJSIP_HEADER(add,{name})": value
                          for name, value in AUTO_ANSWER_HEADERS.items()}


def auto_answer_variables(ext: Extension) -> dict[str, str]:
    """Channel variables that put the auto-answer headers on the INVITE to this phone (a
    fresh dict: callers add to it)."""
    if ext.technology != "PJSIP":
        return {}
    return _AUTO_ANSWER_VARIABLES.copy()


def not_supported(ext: Extension) -> str:
    return (f"answer not supported by this phone: extension {ext.number} is answered by hand"
            f" (if its phone honours NOTIFY talk or auto-answer headers: astcti-shell"
            f" `set extension {ext.number} answer talk` or `... answer reoffer`)")
