"""The OpenAPI document against the running server (schemathesis), so the two cannot drift.

The server is a real `astcti serve` process with a store but no Asterisk link: every request
is routed, validated and answered with its real status code, and none reaches a PBX (so the
generated examples place no calls).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from astcti.secrets import load_key
from astcti.store import Store
from astcti.store.store import ListenerRow
from tests.api.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base url, token) of an `astcti serve` subprocess with a REST listener."""
    tmp = tmp_path_factory.mktemp("openapi")
    db, key, log = tmp / "astcti.db", tmp / "secret.key", tmp / "astcti.log"
    load_key(key, create=True)
    password = secrets.token_urlsafe(12)
    port = free_port()
    store = Store.open(db, create=True)
    try:
        store.add_extension("101", "PJSIP")
        store.add_listener(ListenerRow(port, "127.0.0.1", "*", "astctirest", "token"))
        store.set_user("agent", password, "admin")
    finally:
        store.close()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "astcti", "--db", str(db), "--key",
                                 str(key), "serve", "--admin-socket", str(tmp / "admin.sock")],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 20
        while "ready:" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        req = urllib.request.Request(f"{base}/api/v1/login", method="POST",
                                     data=json.dumps({"username": "agent",
                                                      "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = json.loads(resp.read())["token"]
        yield base, token
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, str]):
    base, _token = served
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json")
    # login/logout change the session the other examples use (and failed logins would throttle
    # this address); the event stream waits by design. Their routes are covered by test_rest.
    return (schema.exclude(path_regex=r"/(login|logout)$")
            .exclude(path="/api/v1/events"))


def test_server_conforms_to_its_openapi_document(api_schema, served: tuple[str, str]) -> None:
    """Every operation answers as its document says, to generated valid input and to invalid
    input (which must be refused with a documented 4xx, never a 5xx)."""
    _base, token = served
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=15, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:
                if _reshapes_the_url(case):
                    return
                case.call_and_validate(headers=headers)

            try:
                check()
            except Unsatisfiable:  # an operation without input has no invalid input
                assert mode is GenerationMode.NEGATIVE
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001  (every operation)
                if _only_throttled(exc):
                    continue
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}:"
                                f" {exc}")
    assert operations >= 8
    assert not failures, "\n\n".join(failures)


def _reshapes_the_url(case) -> bool:
    """A generated path parameter whose text schemathesis writes into the URL unescaped where it
    would end the path ('?', '#'): the request then names another resource (seen: a POST to
    /calls/[['x?...]]/answer reaching /calls/[['x, which answers 405), not this operation."""
    return any(c in str(value) for value in (case.path_parameters or {}).values()
               for c in "?#")


def _only_throttled(exc: BaseException) -> bool:
    """schemathesis probes every operation that succeeded with bad credentials; after five
    failed logins from one address astcti answers 429 instead of 401, which refuses the bad
    credentials just as well (the check only knows 401 and 403)."""
    parts = list(getattr(exc, "exceptions", None) or [exc])
    return bool(parts) and all(type(p).__name__ == "IgnoredAuth"
                               and "429" in getattr(p, "message", "") for p in parts)
