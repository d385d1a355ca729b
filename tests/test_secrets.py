import stat
from pathlib import Path

import pytest

from astcti.errors import SecretError
from astcti.secrets import decrypt, encrypt, load_key


def test_round_trip_and_key_mode(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "secret.key"
    cipher = load_key(key, create=True)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    token = encrypt(cipher, "p&ss#w:rd")
    assert "p&ss" not in token
    assert decrypt(load_key(key), token, what="acti_tlink_01") == "p&ss#w:rd"


def test_key_is_not_recreated(tmp_path: Path) -> None:
    key = tmp_path / "k"
    load_key(key, create=True)
    first = key.read_bytes()
    load_key(key, create=True)
    assert key.read_bytes() == first


def test_wrong_key_names_the_parameter(tmp_path: Path) -> None:
    token = encrypt(load_key(tmp_path / "a", create=True), "secret")
    other = load_key(tmp_path / "b", create=True)
    with pytest.raises(SecretError) as info:
        decrypt(other, token, what="acti_tlink_02")
    assert "acti_tlink_02" in str(info.value) and "secret" not in str(info.value).replace(
        "astcti encrypt-password", "")


def test_tampered_token_is_refused(tmp_path: Path) -> None:
    cipher = load_key(tmp_path / "k", create=True)
    token = encrypt(cipher, "secret")
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretError, match="does not decrypt"):
        decrypt(cipher, tampered, what="acti_tlink_01")
    with pytest.raises(SecretError):
        decrypt(cipher, "not-a-token", what="acti_tlink_01")


def test_missing_and_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        load_key(tmp_path / "none")
    bad = tmp_path / "bad"
    bad.write_text("garbage")
    with pytest.raises(SecretError, match="not a valid astcti key"):
        load_key(bad)
