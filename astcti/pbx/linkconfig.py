"""Parsing of the seed's link parameter: ``acti_tlink_NN = ip#port#app,username,encryptedpassword``."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from cryptography.fernet import Fernet

from astcti.errors import ConfigError
from astcti.secrets import decrypt

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_APP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FORMAT = "ip#port#app,username,encryptedpassword"


@dataclass(frozen=True)
class LinkConfig:
    """One Asterisk reached over ARI."""

    name: str  # the parameter name, e.g. acti_tlink_01
    host: str
    port: int
    app: str
    username: str
    password: str = field(repr=False)  # plaintext, in memory only

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_link(name: str, value: str, cipher: Fernet | None) -> LinkConfig:
    """Parse and decrypt one link parameter; errors name the parameter and the expected format.

    With ``cipher=None`` only the format is checked and the password is left encrypted.
    """
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{name}: {why}; expected {_FORMAT}, e.g. 127.0.0.1#8088#astcti,astcti,<token from `astcti encrypt-password`>")

    value = value.strip()
    parts = value.split("#", 2)
    if len(parts) != 3:
        raise bad("needs two '#' separators")
    host, port_text, rest = parts
    if not host:
        raise bad("host is empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise bad(f"host {host!r} is neither an IP address nor a host name")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise bad(f"port {port_text!r} is not a number between 1 and 65535")
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
    return LinkConfig(name, host, int(port_text), app, username, password)
