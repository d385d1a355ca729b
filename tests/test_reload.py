"""`systemctl reload astcti` (SIGHUP): what another process changed in the store is applied by
the running daemon (the lab tests in tests/e2e/test_two_pbx.py prove pins and links with real
calls; these need no PBX)."""

from __future__ import annotations

import os
import signal
import asyncio

from tests.api.conftest import LocalDaemon, local_daemon  # noqa: F401 (fixture)


async def _hup_until(d: LocalDaemon, condition) -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the reload did not apply the store's change")


async def test_reload_applies_answer_modes_and_parameters(local_daemon: LocalDaemon) -> None:
    d = local_daemon.daemon
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(d.reload()))
    try:
        assert d.directory.extensions["101"].answer == ""
        assert d.store.set_extension_answer("101", "talk")
        d.store.set_parameter("acti_resume_size", "50")
        d.store.set_parameter("acti_dial_context", "from-astcti")
        await _hup_until(d, lambda: d.directory.extensions["101"].answer == "talk"
                         and d.hub.buffer_size == 50
                         and d.control.dial_context == "from-astcti")
        assert d.directory.extensions["102"].answer == ""
        assert d.store.set_extension_answer("101", "")  # back to the parameter acti_answer
        await _hup_until(d, lambda: d.directory.extensions["101"].answer == "")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
