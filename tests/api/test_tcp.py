"""The raw TCP listener (`astctiapi`): newline-delimited JSON, login first, bounded lines."""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from astcti.api import tcp
from astcti.api.protocol import MAX_REQUEST_BYTES
from astcti.client import CtiClient, CtiError
from astcti.store.store import ListenerRow
from tests.api.conftest import LocalDaemon, free_port


async def _open(d: LocalDaemon) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", d.ports["astctiapi"], limit=2**20)


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               line: bytes) -> dict:
    writer.write(line)
    await writer.drain()
    return json.loads(await asyncio.wait_for(reader.readline(), 10))


async def test_login_first_then_requests(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    reader, writer = await _open(d)
    try:
        reply = await _ask(reader, writer, b'{"id":"1","request":"stopmonitor","extension":"101"}\n')
        assert reply["error"] == "not logged in: send a login request first"
        login = json.dumps({"id": 2, "request": "login", "username": d.user,
                            "password": d.password}).encode() + b"\r\n"
        reply = await _ask(reader, writer, login)
        assert reply["result"] == "success" and reply["id"] == 2  # a number stays a number
        reply = await _ask(reader, writer, b'{"id":"3","request":"stopmonitor","extension":"101"}\n')
        assert reply == {"msgtype": "response", "id": "3", "result": "error",
                         "error": "extension 101 is not monitored by this connection"}
        assert (await _ask(reader, writer, b"{oops\n"))["error"].startswith("malformed JSON")
        assert (await _ask(reader, writer, b'{"id":"4","request":"dance"}\n'))["error"] \
            .startswith("unknown request 'dance'")
        assert (await _ask(reader, writer, b'{"id":"5","request":"resume","extension":"101",'
                                           b'"lastseq":"x"}\n'))["error"] == \
            "bad field lastseq: expected an integer"
        assert (await _ask(reader, writer, b'\xff\xfe\n'))["error"].startswith("malformed JSON")
    finally:
        writer.close()


async def test_client_module_over_tcp(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    async with await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], d.user, d.password) as cti:
        with pytest.raises(CtiError, match="not monitored"):
            await cti.request("stopmonitor", extension="102")


async def test_too_long_line_is_refused_and_closed(local_daemon: LocalDaemon) -> None:
    reader, writer = await _open(local_daemon)
    try:
        writer.write(b'{"id":"1","pad":"' + b"x" * (MAX_REQUEST_BYTES + 100))
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert reply["error"] == f"request too large: a line is at most {MAX_REQUEST_BYTES} bytes"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
    finally:
        writer.close()


async def test_partial_line_times_out(local_daemon: LocalDaemon,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "LINE_TIMEOUT", 0.5)
    reader, writer = await _open(local_daemon)
    try:
        writer.write(b'{"id":"1","request":"log')  # ... and never the rest (slowloris)
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert reply["error"].startswith("incomplete line: end each request with a newline")
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


async def test_no_login_times_out(local_daemon: LocalDaemon,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp, "LOGIN_TIMEOUT", 0.5)
    reader, writer = await _open(local_daemon)
    try:
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert reply["error"].startswith("login timeout: send a login request within")
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_listener(local_daemon: LocalDaemon, tmp_path: Path) -> None:
    d = local_daemon
    port = free_port()
    row = ListenerRow(port, "127.0.0.1", "*", "astctiapi", "token", tls=True)
    with pytest.raises(Exception, match="tls needs the parameters acti_tls_cert and acti_tls_key"):
        await d.daemon.listeners.open(row)
    cert, key = _self_signed(tmp_path)
    d.daemon.store.set_parameter("acti_tls_cert", str(cert))
    d.daemon.store.set_parameter("acti_tls_key", str(key))
    await d.daemon.listeners.open(row)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    async with await CtiClient.tcp("127.0.0.1", port, d.user, d.password, ssl=context) as cti:
        with pytest.raises(CtiError, match="not monitored"):
            await cti.request("stopmonitor", extension="101")
    https = free_port()  # the same parameters serve HTTPS on a REST listener
    await d.daemon.listeners.open(ListenerRow(https, "127.0.0.1", "*", "astctirest", tls=True))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{https}/api/v1/requests", ssl=context) as resp:
            assert resp.status == 200 and (await resp.json())["requests"]
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b'{"id":"1","request":"login"}\n')
        await writer.drain()
        data = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        if not data:
            raise ConnectionError("closed: plain text on a TLS port")


async def test_reload_serves_a_renewed_certificate(local_daemon: LocalDaemon,
                                                    tmp_path: Path, caplog) -> None:
    """Certificates are renewed in place (same paths) and the service reloaded: new
    connections get the new certificate, connected clients stay; a broken renewal keeps the
    one that works."""
    d = local_daemon
    port = free_port()
    first_dir, second_dir, third_dir = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    for directory in (first_dir, second_dir, third_dir):
        directory.mkdir()
    cert, key = _self_signed(first_dir)
    d.daemon.store.set_parameter("acti_tls_cert", str(cert))
    d.daemon.store.set_parameter("acti_tls_key", str(key))
    d.daemon.store.add_listener(ListenerRow(port, "127.0.0.1", "*", "astctiapi", "token",
                                            tls=True))
    await d.daemon.reload()
    old_ca = ssl.create_default_context(cafile=str(cert))
    old_ca.check_hostname = False
    async with await CtiClient.tcp("127.0.0.1", port, d.user, d.password, ssl=old_ca) as early:
        new_cert, new_key = _self_signed(second_dir)
        new_ca = ssl.create_default_context(cafile=str(new_cert))
        new_ca.check_hostname = False
        cert.write_bytes(new_cert.read_bytes())  # renewed where the parameters point
        key.write_bytes(new_key.read_bytes())
        await d.daemon.reload()
        async with await CtiClient.tcp("127.0.0.1", port, d.user, d.password, ssl=new_ca) as cti:
            with pytest.raises(CtiError, match="not monitored"):
                await cti.request("stopmonitor", extension="101")
        with pytest.raises(ssl.SSLCertVerificationError):
            await CtiClient.tcp("127.0.0.1", port, d.user, d.password, ssl=old_ca)
        with pytest.raises(CtiError, match="not monitored"):  # still connected, still served
            await early.request("stopmonitor", extension="101")
        third_cert, _ = _self_signed(third_dir)
        cert.write_bytes(third_cert.read_bytes())  # a certificate with the key of another
        key.write_bytes(_self_signed(third_dir)[1].read_bytes())
        await d.daemon.reload()
        assert f"listener {port}: cannot load TLS certificate" in caplog.text
        assert "it keeps the certificate it had" in caplog.text
        async with await CtiClient.tcp("127.0.0.1", port, d.user, d.password, ssl=new_ca) as cti:
            with pytest.raises(CtiError, match="not monitored"):
                await cti.request("stopmonitor", extension="101")


async def test_auth_none_tcp_clients_are_known_by_their_address(
        local_daemon: LocalDaemon) -> None:
    """No login on an auth=none listener: the ipextnmap seats the address, and that seat is
    all such a client may act on."""
    d = local_daemon
    port = free_port()
    await d.daemon.listeners.open(ListenerRow(port, "127.0.0.1", "127.0.0.1/32", "astctiapi",
                                              "none"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        reply = await _ask(reader, writer, b'{"id":0,"request":"myextension"}\n')
        assert (reply["result"], reply["id"]) == ("error", 0)
        assert "add ipextnmap 127.0.0.1 EXT" in reply["error"]
        d.daemon.seat("127.0.0.1", "101")
        reply = await _ask(reader, writer, b'{"id":0,"request":"myextension"}\n')
        assert (reply["result"], reply["extension"]) == ("success", "101")
        reply = await _ask(reader, writer, b'{"id":1,"request":"stopmonitor","extension":"101"}\n')
        assert reply["error"] == "extension 101 is not monitored by this connection"
        reply = await _ask(reader, writer, b'{"id":1,"request":"startmonitor","extension":"102"}\n')
        assert reply["result"] == "error" and "address 127.0.0.1 sits at extension 101" in \
            reply["error"]
    finally:
        writer.close()
        d.daemon.unseat("127.0.0.1")
