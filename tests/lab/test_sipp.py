"""The lab's SIPp phones start for real or say why not: a test must never wait for an INVITE
on a phone that died at start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.lab.harness import LabConfig
from tests.lab.sipp import Phone, SippProcess, phone_process, udp_ports_of


def _phone(workdir: Path) -> tuple[SippProcess, int]:
    """A ringing phone on this developer's spare slot (x99: no lab phone or trunk uses it)."""
    o = LabConfig.from_env().port_offset
    port = 5099 + o
    return phone_process("199", port, Phone(answer_after_ms=None), workdir, port + 1,
                         media_port=40000 + 2 * o + 990), port


def test_wait_listening_returns_once_sipp_holds_its_port(tmp_path: Path) -> None:
    proc, port = _phone(tmp_path)
    proc.start()
    try:
        proc.wait_listening(port)
        assert port in udp_ports_of(proc.pid)  # SIPp's own socket, not someone else's
    finally:
        proc.stop()


def test_a_phone_that_cannot_bind_fails_with_sipps_own_error(tmp_path: Path) -> None:
    """Someone holds the port when SIPp binds it (a probe did, now and then): SIPp exits 254,
    and the wait says so instead of returning with a dead phone."""
    proc, port = _phone(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        proc.start()
        try:
            with pytest.raises(RuntimeError, match=r"phone-199 exited at start \(exit 254\):"
                                                   r" Unable to bind main socket"):
                proc.wait_listening(port)
        finally:
            proc.stop()


def test_listen_starts_the_phone_and_returns_once_it_holds_its_port(tmp_path: Path) -> None:
    proc, port = _phone(tmp_path)
    try:
        assert proc.listen(port) is proc
        assert port in udp_ports_of(proc.pid)
    finally:
        proc.stop()


def test_listen_on_a_port_that_stays_taken_names_the_cause(tmp_path: Path) -> None:
    """Nobody releases the port: the wait for it says so and no SIPp is left behind."""
    proc, port = _phone(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))
        with pytest.raises(OSError, match="in use"):
            proc.listen(port)
    assert proc.proc is None
