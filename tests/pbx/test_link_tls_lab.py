"""ARI over TLS against Asterisk's own TLS HTTP server (http.conf tlsenable): the certificate
is verified (CA file, host name), a real call's events arrive over wss, and a certificate
astcti cannot trust is one clear line, never a silent downgrade."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from astcti.client import CtiClient
from astcti.pbx.link import AsteriskLink
from astcti.pbx.linkconfig import LinkConfig, parse_link
from astcti.secrets import encrypt, load_key
from tests.lab import Lab
from tests.lab.ari import wait_for
from tests.lab.harness import ExtraDaemon, free_port
from tests.lab.sipp import Phone
from tests.pbx.helpers import until

pytestmark = pytest.mark.lab

KEYS = "etc/asterisk/keys"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Asterisk's certificate for 127.0.0.1, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("asterisk lab"))
            .issuer_name(ca[1].subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca[0], hashes.SHA256()))
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def tls_asterisk(lab: Lab, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """The lab's Asterisk with its TLS HTTP server on, for this test: (port, the CA that signed
    its certificate, another CA)."""
    ca, other = _ca("astcti test CA"), _ca("someone else's CA")
    key, cert = _server(ca)
    keys = lab.root / KEYS
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "astcti-test.pem").write_bytes(_pem(cert))
    (keys / "astcti-test.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    for f in keys.iterdir():
        f.chmod(0o644)  # a throw-away test key, read by the chroot's asterisk user
    ca_file, other_file = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
    ca_file.write_bytes(_pem(ca[1]))
    other_file.write_bytes(_pem(other[1]))
    port = 8089 + lab.config.port_offset
    http_conf = lab.root / "etc/asterisk/http.conf"
    original = http_conf.read_text()
    http_conf.write_text(original + f"tlsenable = yes\ntlsbindaddr = 127.0.0.1:{port}\n"
                                    f"tlscertfile = /{KEYS}/astcti-test.pem\n"
                                    f"tlsprivatekey = /{KEYS}/astcti-test.key\n")
    lab.rx("module reload http")
    try:
        wait_for(lambda: f"127.0.0.1:{port}" in lab.rx("http show status"), 20,
                 "Asterisk's TLS HTTP server")
        yield port, ca_file, other_file
    finally:
        http_conf.write_text(original)
        lab.rx("module reload http")


def _config(lab: Lab, port: int, cafile: Path, host: str = "127.0.0.1") -> LinkConfig:
    c = lab.config
    return LinkConfig("acti_tlink_98", host, port, "astcti-tls", c.ari_user, c.ari_password,
                      tls=True, cafile=str(cafile))


async def test_ari_over_tls_is_verified_and_carries_real_calls(lab: Lab, tls_asterisk) -> None:
    port, ca, other = tls_asterisk
    events: list[dict] = []
    link = AsteriskLink(_config(lab, port, ca), heartbeat=2,
                        on_event=lambda _l, e: events.append(e))
    link.start()
    try:
        assert await link.wait_up(20), link.last_error
        assert link.config.base_url == f"https://127.0.0.1:{port}"
        assert link.version and link.version.startswith("22.")
        await link.subscribe(["endpoint:PJSIP/102"])
        lab.start_phone("102", Phone(answer_after_ms=200))
        caller = lab.call("102", talk_ms=500)
        assert await asyncio.to_thread(caller.wait, 30) == 0
        await until(lambda: any(e["type"] == "ChannelDestroyed" for e in events), 20,
                    "the call's events over wss")
    finally:
        await link.stop()
        lab.stop_phone("102")

    for config, words in [(_config(lab, port, other), "is not trusted"),
                          (_config(lab, port, ca, host="localhost"), "is not trusted")]:
        refused = AsteriskLink(config, heartbeat=2)
        refused.start()
        try:
            assert not await refused.wait_up(3)
            assert words in (refused.last_error or "")
            assert "acti_ari_cafile" in (refused.last_error or "")
            assert not refused.up
        finally:
            await refused.stop()


async def test_daemon_with_an_https_link(lab: Lab, tls_asterisk, tmp_path: Path) -> None:
    """The operator's way: `acti_tlink_01 = https://host#port#...` and `acti_ari_cafile`."""
    port, ca, _other = tls_asterisk
    c = lab.config
    daemon = ExtraDaemon(lab, tmp_path, ari_port=c.ari_port, ws_port=free_port())
    cipher = load_key(daemon.key)
    value = (f"https://127.0.0.1#{port}#astcti-extra,{c.ari_user},"
             f"{encrypt(cipher, c.ari_password)}")
    assert parse_link("acti_tlink_01", value, cipher, str(ca)).tls
    from astcti.store import Store

    store = Store.open(daemon.db)
    try:
        store.set_parameter("acti_tlink_01", value)
        store.set_parameter("acti_ari_cafile", str(ca))
    finally:
        store.close()
    await asyncio.to_thread(daemon.start)
    lab.start_phone("101", Phone(answer_after_ms=200))
    try:
        client = await CtiClient.websocket(f"ws://127.0.0.1:{daemon.ws_port}/", c.astcti_user,
                                           c.astcti_password)
        async with client:
            await client.request_until_ok("startmonitor", extension="101")
            caller = lab.call("101", talk_ms=300)
            await client.expect("established", extension="101", timeout=30)
            await client.expect("connectioncleared", extension="101", timeout=30)
            await asyncio.to_thread(caller.wait, 30)
        links = subprocess.run([sys.executable, "-m", "astcti.admin.shell", "--socket",
                                str(daemon.admin_socket), "-c", "show links"],
                               capture_output=True, text=True, timeout=30)
        assert f"127.0.0.1:{port}" in links.stdout and " up " in links.stdout
    finally:
        lab.stop_phone("101")
        await asyncio.to_thread(daemon.stop)
