"""The asterisk_ari role's block module: astcti's part of a file, nothing else touched.

Pure text in, text out; tests/delivery/test_install.py proves the same files on a running
Asterisk (another ARI user and TLS still answering)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "ansible/roles/asterisk_ari/library/asterisk_config_block.py"
_spec = importlib.util.spec_from_file_location("asterisk_config_block", _PATH)
block = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(block)

SITE_HTTP = """\
; the site's own settings
[general]
servername = SitePBX
enabled=yes
bindaddr = 0.0.0.0 ; WebRTC clients
bindport = 8088
tlsenable = yes
tlsbindaddr = 0.0.0.0:8089
tlscertfile = /etc/asterisk/keys/site.crt

[post_mappings]
upload = /var/lib/asterisk/uploads
"""

SITE_ARI = """\
[general]
enabled = yes
channelvars = SITE_VAR, OTHER

[otherapp]
type = user
password = secret
"""


def params(**over) -> dict:
    p = dict(path="/etc/asterisk/x.conf", section="general", fragment=False, options={},
             text="", merge=[], keep=[], own_sections=[], legacy_header="",
             marker="; {mark} astcti (managed by Ansible role asterisk_ari)")
    p.update(over)
    return p


def apply(current: str, **over) -> str:
    text, _, problem = block.build(params(**over), current)
    assert problem is None, problem
    return text


def test_other_settings_stay_byte_for_byte_and_the_block_appends() -> None:
    out = apply(SITE_HTTP, options={"enabled": "yes", "bindaddr": "0.0.0.0", "bindport": 8088},
                keep=["bindaddr", "bindport"])
    assert out.startswith(SITE_HTTP.rstrip("\n") + "\n")
    assert out.endswith("; BEGIN astcti (managed by Ansible role asterisk_ari)\n[general](+)\n"
                        "enabled = yes\nbindaddr = 0.0.0.0\nbindport = 8088\n"
                        "; END astcti (managed by Ansible role asterisk_ari)\n")


def test_second_application_is_idempotent() -> None:
    first = apply(SITE_ARI, options={"channelvars": "CHANNEL(linkedid),ASTCTI_USERDATA"},
                  merge=["channelvars"], text="[astcti]\ntype = user\n", own_sections=["astcti"])
    again = apply(first, options={"channelvars": "CHANNEL(linkedid),ASTCTI_USERDATA"},
                  merge=["channelvars"], text="[astcti]\ntype = user\n", own_sections=["astcti"])
    assert again == first
    assert "[otherapp]" in first and first.count("[astcti]") == 1


def test_list_options_are_merged_not_replaced() -> None:
    out = apply(SITE_ARI, options={"channelvars": "CHANNEL(linkedid),ASTCTI_USERDATA"},
                merge=["channelvars"])
    assert "channelvars = SITE_VAR,OTHER,CHANNEL(linkedid),ASTCTI_USERDATA" in out
    assert "channelvars = SITE_VAR, OTHER" in out  # theirs, untouched


def test_a_different_address_of_another_application_fails_instead_of_overriding() -> None:
    _, existing, problem = block.build(
        params(options={"bindaddr": "127.0.0.1"}, keep=["bindaddr"]), SITE_HTTP)
    assert existing["bindaddr"] == "0.0.0.0"
    assert problem is not None and "sets bindaddr = 0.0.0.0 in [general]" in problem
    assert "astcti needs 127.0.0.1" in problem


def test_a_file_without_the_section_gets_an_empty_one_first() -> None:
    out = apply("", options={"enabled": "yes"})
    assert out.startswith("[general]\n\n; BEGIN astcti")
    out = apply("[otherapp]\ntype = user\n", options={"enabled": "yes"})
    assert out.startswith("[general]\n[otherapp]\n")


def test_a_section_only_astcti_may_define() -> None:
    _, _, problem = block.build(params(own_sections=["otherapp"], text="[otherapp]\n"), SITE_ARI)
    assert problem and "already defines [otherapp] outside astcti's block" in problem


def test_a_file_an_earlier_role_wrote_whole_is_reduced_to_the_block() -> None:
    legacy = "; Rendered by astcti from asterisk-conf/asterisk/http.conf.j2 -- ...\n[general]\nenabled = yes\n"
    out = apply(legacy, options={"enabled": "yes"},
                legacy_header="; Rendered by astcti from asterisk-conf/asterisk/http.conf.j2")
    assert "Rendered by astcti" not in out and out.count("enabled = yes") == 1


def test_fragment_included_inside_the_section_has_no_section_lines() -> None:
    out = apply("channelvars = MINE\n", fragment=True, options={"channelvars": "A,B"},
                merge=["channelvars"])
    assert "[general]" not in out
    assert out.endswith("; BEGIN astcti (managed by Ansible role asterisk_ari)\n"
                        "channelvars = MINE,A,B\n; END astcti (managed by Ansible role asterisk_ari)\n")


@pytest.mark.parametrize("line,expected", [("a = b ; c", "a = b "), (r"a = b\;c", "a = b;c")])
def test_comments(line: str, expected: str) -> None:
    assert block.strip_comment(line) == expected
