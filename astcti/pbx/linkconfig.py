"""Parsing of the link parameters of one Asterisk.

``acti_tlink_NN = ip#port#app,username,encryptedpassword`` (ARI, the seed's format) and its
sibling ``acti_amilink_NN = ip#port,username,encryptedsecret`` (AMI, same NN, secret encrypted
with the same key by `astcti encrypt-password`). An ARI link to Asterisk on another host goes
over TLS when the host is written `https://pbx.example.com` (or `wss://`): the certificate is
verified (host name included) against the system's CAs or the PEM file of parameter
`acti_ari_cafile`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.fernet import Fernet

from astcti.errors import ConfigError
from astcti.secrets import decrypt

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_APP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FORMAT = "ip#port#app,username,encryptedpassword (https://host#... for TLS)"
_SCHEME = re.compile(r"^(https?|wss?)://", re.IGNORECASE)
_AMI_FORMAT = "ip#port,username,encryptedsecret"
LINK_PREFIX = "acti_tlink_"
AMI_LINK_PREFIX = "acti_amilink_"


@dataclass(frozen=True)
class LinkConfig:
    """One Asterisk reached over ARI."""

    name: str  # the parameter name, e.g. acti_tlink_01
    host: str
    port: int
    app: str
    username: str
    password: str = field(repr=False)  # plaintext, in memory only
    tls: bool = False  # https/wss, certificate verified
    cafile: str = ""  # PEM CA bundle for the verification (empty: the system's)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def events_url(self) -> str:
        return self.base_url.replace("http", "ws", 1) + "/ari/events"


@dataclass(frozen=True)
class AmiLinkConfig:
    """One Asterisk reached over AMI (the manager interface), sibling of an ARI link."""

    name: str  # the parameter name, e.g. acti_amilink_01
    host: str
    port: int
    username: str
    secret: str = field(repr=False)  # plaintext, in memory only

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def sibling(self) -> str:
        """The ARI link parameter of the same Asterisk (acti_amilink_01 -> acti_tlink_01)."""
        return LINK_PREFIX + self.name.removeprefix(AMI_LINK_PREFIX)


def ami_sibling(link_name: str) -> str:
    """The AMI parameter of an ARI link (acti_tlink_01 -> acti_amilink_01)."""
    return AMI_LINK_PREFIX + link_name.removeprefix(LINK_PREFIX)


def _check_host(host: str, bad: Callable[[str], ConfigError]) -> None:
    if not host:
        raise bad("host is empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise bad(f"host {host!r} is neither an IP address nor a host name")


def _check_port(port_text: str, bad: Callable[[str], ConfigError]) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad(f"port {port_text!r} is not a number between 1 and 65535")
    return int(port_text)


def parse_amilink(name: str, value: str, cipher: Fernet | None) -> AmiLinkConfig:
    """Parse and decrypt one `acti_amilink_NN`; errors name the parameter and the format.

    With ``cipher=None`` only the format is checked and the secret is left encrypted.
    """
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{name}: {why}; expected {_AMI_FORMAT}, e.g. 127.0.0.1#5038,astcti,"
                           "<token from `astcti encrypt-password`>")

    value = value.strip()
    host, sep, rest = value.partition("#")
    if not sep or "#" in rest:
        raise bad("needs exactly one '#' between host and port")
    _check_host(host, bad)
    fields = rest.split(",", 2)
    if len(fields) != 3:
        raise bad("needs port,username,encryptedsecret after the host")
    port_text, username, token = (f.strip() for f in fields)
    port = _check_port(port_text, bad)
    if not username or not _APP.match(username):
        raise bad(f"username {username!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if not token:
        raise bad("encrypted secret is empty")
    secret = decrypt(cipher, token, what=name) if cipher is not None else token
    return AmiLinkConfig(name, host, port, username, secret)


def parse_link(name: str, value: str, cipher: Fernet | None, cafile: str = "") -> LinkConfig:
    """Parse and decrypt one link parameter; errors name the parameter and the expected format.

    With ``cipher=None`` only the format is checked and the password is left encrypted.
    `cafile` (parameter acti_ari_cafile) verifies the certificate of an https/wss link.
    """
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{name}: {why}; expected {_FORMAT}, e.g. 127.0.0.1#8088#astcti,astcti,<token from `astcti encrypt-password`>")

    value = value.strip()
    scheme = _SCHEME.match(value)
    tls = bool(scheme) and scheme.group(1).lower() in ("https", "wss")
    if scheme:
        value = value[scheme.end():]
    parts = value.split("#", 2)
    if len(parts) != 3:
        raise bad("needs two '#' separators")
    host, port_text, rest = parts
    _check_host(host, bad)
    _check_port(port_text, bad)
    fields = rest.split(",", 2)
    if len(fields) != 3:
        raise bad("needs app,username,encryptedpassword after the port")
    app, username, token = (f.strip() for f in fields)
    if not _APP.match(app):
        raise bad(f"app name {app!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if not username:
        raise bad("username is empty")
    if not token:
        raise bad("encrypted password is empty")
    password = decrypt(cipher, token, what=name) if cipher is not None else token
    return LinkConfig(name, host, int(port_text), app, username, password, tls,
                      cafile if tls else "")
