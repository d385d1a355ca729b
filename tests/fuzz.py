"""Seeded generator of bad requests, shared by the per-interface fuzz tests (WS, TCP, REST).

Mutates valid requests of every declared request (missing, extra, wrongly typed, oversized,
unicode, nested fields, unknown names, broken JSON), so every generated request must get a
well-formed `fail` (or, rarely, a `success` that is legitimately valid).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import astcti.api.requests  # noqa: F401
from astcti.api.protocol import REQUESTS

WEIRD_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, 1.5, float("1e308"), "", " ", "\x00", "😀" * 10,
    "' OR 1=1 --", "../../etc/passwd", "%s%s%n", "a" * 5000, [], [1, [2, [3]]], {},
    {"a": {"b": {"c": {}}}}, "101\n102", "PJSIP/101", "*#", "<script>",
]


#: extension/destination values: the lab's agents (a daemon linked nowhere), or what a fuzz run
#: against the lab's Asterisk passes (tests.lab.harness.FUZZ_ENDPOINTS, which ring nobody)
NUMBERS = ("101", "102", "199", "0912345678", "x1")


def _valid_value(field: Any, rng: random.Random, numbers: tuple[str, ...] = NUMBERS) -> Any:
    if field.type == "integer":
        return rng.randint(0, 100)
    if field.type == "object":
        return {"k": "v"}
    if field.type == "boolean":
        return rng.choice([True, False])
    if field.choices:
        return rng.choice(field.choices)
    return rng.choice(numbers)


def bad_requests(count: int, seed: int = 1234, *, allow_login: bool = True,
                 numbers: tuple[str, ...] = NUMBERS) -> Iterator[str]:
    rng = random.Random(seed)
    names = [n for n in REQUESTS if allow_login or n not in ("login", "logout")]
    for i in range(count):
        name = rng.choice(names)
        spec = REQUESTS[name]
        msg: dict[str, Any] = {"id": str(i), "request": name}
        for f in spec.fields:
            if rng.random() < 0.7:
                msg[f.name] = _valid_value(f, rng, numbers)
        mutation = rng.randrange(10)
        if mutation == 0 and spec.fields:
            msg[rng.choice(spec.fields).name] = rng.choice(WEIRD_VALUES)
        elif mutation == 1:
            msg["request"] = rng.choice(["", "START", "startmonitor ", "x" * 300, 5, None,
                                         ["startmonitor"], "makeCall?", "__init__"])
        elif mutation == 2:
            msg["id"] = rng.choice([None, {}, [], True, "", "9" * 100])
        elif mutation == 3:
            msg[rng.choice(["extra", "ID", "Request", "\u202e", "a" * 200])] = rng.choice(
                WEIRD_VALUES)
        elif mutation == 4:
            msg.pop("id", None)
        elif mutation == 5:
            text = json.dumps(msg)
            yield text[: rng.randrange(len(text))]  # truncated JSON
            continue
        elif mutation == 6:
            yield rng.choice(["[]", "null", "42", '"str"', "{}", "{\"id\":", "\ufeff{}",
                              json.dumps([msg])])
            continue
        elif mutation == 7 and spec.fields:
            for f in spec.fields:
                msg[f.name] = rng.choice(WEIRD_VALUES)
        yield json.dumps(msg)


def well_formed(reply: dict[str, Any]) -> bool:
    return (reply.get("msgtype") == "response" and reply.get("result") in ("success", "error")
            and isinstance(reply.get("error"), str) and isinstance(reply.get("id"), (str, int, float))
            and not isinstance(reply.get("id"), bool)
            and (reply["result"] == "success") == (reply["error"] == ""))
