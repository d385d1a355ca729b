import json

import pytest

import astcti.api.requests  # noqa: F401
from astcti.api.protocol import (
    REQUESTS, EnvelopeError, Field, RequestError, parse_envelope, response,
)


def test_envelope_ok_and_case_insensitive() -> None:
    env = parse_envelope('{"id": 15, "request": "StartMonitor", "extension": 101}')
    assert (env.id, env.name) == (15, "startmonitor")
    assert REQUESTS["startmonitor"].validate(env.message) == {"extension": "101"}


@pytest.mark.parametrize("rid", [0, 15, "15", "0", 2.5])
def test_the_id_comes_back_exactly_as_sent(rid) -> None:
    """The author's clients reuse a constant number per request type: `0` stays `0`."""
    env = parse_envelope(json.dumps({"id": rid, "request": "snapshot"}))
    assert env.id == rid and type(env.id) is type(rid)
    assert response(env.id)["id"] == rid and type(response(env.id)["id"]) is type(rid)
    failed = response(env.id, "no active call")
    assert failed["result"] == "error" and failed["error"] == "no active call"


@pytest.mark.parametrize("raw, words, rid", [
    ("x" * 70000, "request too large", ""),
    ("{", "malformed JSON", ""),
    ("null", "must be a JSON object", ""),
    ('{"id": true, "request": "snapshot"}', "bad field id", ""),
    ('{"id": [1], "request": "snapshot"}', "bad field id", ""),
    ('{"id": Infinity, "request": "snapshot"}', "bad field id", ""),
    ('{"id": "a"}', "missing field request", "a"),
    ('{"id": "a", "request": 5}', "missing field request", "a"),
    ('{"id": "a", "request": "nope"}', "unknown request", "a"),
])
def test_envelope_errors(raw: str, words: str, rid: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw)
    assert words in info.value.error and info.value.id == rid


@pytest.mark.parametrize("field, value, ok", [
    (Field("n", type="integer", minimum=0), "12", 12),
    (Field("n", type="integer", minimum=0), -1, None),
    (Field("n", type="integer"), True, None),
    (Field("b", type="boolean"), "true", True),
    (Field("b", type="boolean"), "maybe", None),
    (Field("o", type="object"), '{"a": 1}', {"a": 1}),
    (Field("o", type="object"), "[1]", None),
    (Field("s", choices=("ready", "notready")), "READY", "ready"),
    (Field("s", choices=("ready", "notready")), "lunch", None),
    (Field("s", max_length=3), "abcd", None),
])
def test_field_checks(field: Field, value, ok) -> None:
    if ok is None:
        with pytest.raises(RequestError):
            field.check(value)
    else:
        assert field.check(value) == ok


def test_every_request_is_documented() -> None:
    for spec in REQUESTS.values():
        assert spec.doc, spec.name
        assert all(f.doc for f in spec.fields), spec.name
        json.dumps([f.name for f in spec.fields])
