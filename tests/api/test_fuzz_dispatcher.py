"""The dispatcher under generated input: always a well-formed response, never an exception."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astcti.api.auth import Auth, Identity
from astcti.api.dispatch import Dispatcher, Services, Session
from astcti.cti.directory import Directory
from astcti.cti.hub import Hub
from astcti.cti.tracker import Tracker
from astcti.store import Store
from tests.fuzz import bad_requests, well_formed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=10,
)
messages = st.fixed_dictionaries(
    {}, optional={"id": json_values, "request": st.sampled_from(
        ["login", "logout", "startmonitor", "stopmonitor", "snapshot", "resume", "nope"]) | st.text(max_size=20),
        "extension": json_values, "lastseq": json_values, "username": json_values,
        "password": json_values, "token": json_values}
)


def make_dispatcher(tmp: Path) -> tuple[Dispatcher, Session]:
    store = Store.open(tmp / "fuzz.db", create=True)
    directory = Directory()
    services = Services(store, directory, Tracker(directory.resolve), Hub(), Auth(store))
    session = Session("test", "192.0.2.1", lambda text: None)
    session.identity = Identity("fuzzer", "admin", user=False)
    return Dispatcher(services), session


_shared: dict[str, tuple[Dispatcher, Session, asyncio.AbstractEventLoop]] = {}


@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(message=messages | st.text(max_size=200))
def test_hypothesis_messages(tmp_path_factory, message) -> None:
    if "d" not in _shared:
        _shared["d"] = (*make_dispatcher(tmp_path_factory.mktemp("d")), asyncio.new_event_loop())
    dispatcher, session, loop = _shared["d"]
    raw = json.dumps(message) if isinstance(message, dict) else message
    reply, status = loop.run_until_complete(dispatcher.handle(session, raw))
    assert well_formed(reply), reply
    assert status in (200, 400, 401, 404, 409, 429, 503)
    json.dumps(reply)


async def test_ten_thousand_mutated_requests(tmp_path: Path) -> None:
    dispatcher, session = make_dispatcher(tmp_path)
    results = {"success": 0, "error": 0}
    for raw in bad_requests(10000, seed=7):
        reply, status = await dispatcher.handle(session, raw)
        assert well_formed(reply), (raw, reply)
        assert status != 500, (raw, reply)
        results[reply["result"]] += 1
    assert results["error"] > 9000
