"""Key file and authenticated encryption of link passwords (replaces the seed's encryptpasswd.exe).

Fernet (AES-128-CBC + HMAC-SHA256) from `cryptography`: a wrong key or a tampered token fails
authentication instead of decrypting to garbage. The key is created 0600 on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from astcti.errors import SecretError

DEFAULT_KEY_PATH = Path(os.environ.get("ASTCTI_KEY", "/etc/astcti/secret.key"))


def load_key(path: Path | str, *, create: bool = False) -> Fernet:
    """The Fernet cipher of the key file; created (0600, parent 0700) only when asked."""
    path = Path(path)
    if not path.exists():
        if not create:
            raise SecretError(
                f"key file {path} does not exist: run `astcti init` (or pass the right --key)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_key(path)
        except OSError as exc:
            raise SecretError(f"cannot create key file {path}: {exc.strerror}")
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key() + b"\n")
    try:
        raw = path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(f"cannot read key file {path}: {exc.strerror}: check its owner and mode")
    try:
        return Fernet(raw)
    except ValueError:
        raise SecretError(f"key file {path} is not a valid astcti key: restore it from a backup")


def encrypt(cipher: Fernet, plaintext: str) -> str:
    return cipher.encrypt(plaintext.encode()).decode()


def decrypt(cipher: Fernet, token: str, *, what: str) -> str:
    """Decrypt a stored secret; `what` names it (e.g. the parameter) in the error line."""
    try:
        return cipher.decrypt(token.encode()).decode()
    except (InvalidToken, ValueError, UnicodeError):
        raise SecretError(
            f"{what}: the encrypted password does not decrypt with this key (wrong key file or"
            " altered value): encrypt it again with `astcti encrypt-password` and update it"
        )
