from pathlib import Path

import pytest

from astcti.errors import ConfigError, SecretError
from astcti.pbx.linkconfig import ami_sibling, parse_amilink, parse_link
from astcti.secrets import encrypt, load_key


@pytest.fixture
def cipher(tmp_path: Path):
    return load_key(tmp_path / "k", create=True)


def test_seed_format(cipher) -> None:
    token = encrypt(cipher, "pw")
    link = parse_link("acti_tlink_01", f"192.168.1.10#8088#astcti,ariuser,{token}", cipher)
    assert (link.host, link.port, link.app, link.username, link.password) == (
        "192.168.1.10", 8088, "astcti", "ariuser", "pw")
    assert link.base_url == "http://192.168.1.10:8088"
    assert "pw" not in repr(link).replace("password", "")


def test_hostname_and_ipv6(cipher) -> None:
    token = encrypt(cipher, "pw")
    assert parse_link("l", f"pbx.example.org#8089#a,u,{token}", cipher).host == "pbx.example.org"
    assert parse_link("l", f"::1#8088#a,u,{token}", cipher).base_url == "http://[::1]:8088"


@pytest.mark.parametrize("value, why", [
    ("127.0.0.1:8088:astcti,u,t", "two '#' separators"),
    ("#8088#a,u,t", "host is empty"),
    ("bad host#8088#a,u,t", "neither an IP address"),
    ("127.0.0.1#80x#a,u,t", "not a number"),
    ("127.0.0.1#70000#a,u,t", "not a number between 1 and 65535"),
    ("127.0.0.1#8088#a,u", "app,username,encryptedpassword"),
    ("127.0.0.1#8088#a b,u,t", "app name"),
    ("127.0.0.1#8088#a,,t", "username is empty"),
    ("127.0.0.1#8088#a,u,", "encrypted password is empty"),
])
def test_malformed_values_name_parameter_and_format(cipher, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_link("acti_tlink_03", value, cipher)
    message = str(info.value)
    assert message.startswith("acti_tlink_03: ") and why in message
    assert "ip#port#app,username,encryptedpassword" in message


def test_undecryptable_password(cipher, tmp_path: Path) -> None:
    other = load_key(tmp_path / "other", create=True)
    token = encrypt(other, "pw")
    with pytest.raises(SecretError, match="acti_tlink_01"):
        parse_link("acti_tlink_01", f"127.0.0.1#8088#a,u,{token}", cipher)
    # format-only check leaves the token as is
    assert parse_link("acti_tlink_01", f"127.0.0.1#8088#a,u,{token}", None).password == token


# -- acti_amilink_NN = ip#port,username,encryptedsecret (the AMI sibling of acti_tlink_NN) ----
def test_ami_format(cipher) -> None:
    token = encrypt(cipher, "s3cret")
    ami = parse_amilink("acti_amilink_01", f"192.168.1.10#5038,astcti,{token}", cipher)
    assert (ami.host, ami.port, ami.username, ami.secret) == ("192.168.1.10", 5038, "astcti",
                                                               "s3cret")
    assert ami.address == "192.168.1.10:5038" and "s3cret" not in repr(ami)
    assert ami.sibling == "acti_tlink_01" and ami_sibling("acti_tlink_07") == "acti_amilink_07"
    assert parse_amilink("x", f"::1#5038,u,{token}", cipher).address == "[::1]:5038"
    assert parse_amilink("x", f" pbx.example.org#5038 , u , {token} ", cipher).port == 5038


@pytest.mark.parametrize("value, why", [
    ("127.0.0.1:5038,u,t", "exactly one '#'"),
    ("127.0.0.1#5038#astcti,u,t", "exactly one '#'"),  # the ARI format by mistake
    ("#5038,u,t", "host is empty"),
    ("bad host#5038,u,t", "neither an IP address"),
    ("127.0.0.1#50x,u,t", "not a number"),
    ("127.0.0.1#0,u,t", "between 1 and 65535"),
    ("127.0.0.1#5038,u", "port,username,encryptedsecret"),
    ("127.0.0.1#5038,,t", "username ''"),
    ("127.0.0.1#5038,a b,t", "username 'a b'"),
    ("127.0.0.1#5038,u,", "encrypted secret is empty"),
])
def test_malformed_ami_values_name_parameter_and_format(cipher, value: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_amilink("acti_amilink_02", value, cipher)
    message = str(info.value)
    assert message.startswith("acti_amilink_02: ") and why in message and "\n" not in message
    assert "ip#port,username,encryptedsecret" in message


def test_undecryptable_ami_secret(cipher, tmp_path: Path) -> None:
    token = encrypt(load_key(tmp_path / "other", create=True), "pw")
    with pytest.raises(SecretError, match="acti_amilink_01"):
        parse_amilink("acti_amilink_01", f"127.0.0.1#5038,u,{token}", cipher)
    assert parse_amilink("acti_amilink_01", f"127.0.0.1#5038,u,{token}", None).secret == token


def test_https_and_wss_links_are_tls_with_the_ca_file(cipher) -> None:
    token = encrypt(cipher, "pw")
    for scheme in ("https", "wss", "HTTPS"):
        config = parse_link("acti_tlink_01", f"{scheme}://pbx.example.com#8089#astcti,u,{token}",
                            cipher, "/etc/astcti/ca.pem")
        assert config.tls and config.cafile == "/etc/astcti/ca.pem"
        assert config.base_url == "https://pbx.example.com:8089"
        assert config.events_url == "wss://pbx.example.com:8089/ari/events"
    plain = parse_link("acti_tlink_01", f"http://10.0.0.5#8088#astcti,u,{token}", cipher,
                       "/etc/astcti/ca.pem")
    assert not plain.tls and plain.cafile == "" and plain.base_url == "http://10.0.0.5:8088"
    with pytest.raises(ConfigError, match="https://host#... for TLS"):
        parse_link("acti_tlink_01", f"https://pbx.example.com:8089,astcti,u,{token}", cipher)
