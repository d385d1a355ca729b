"""astcti.provision: the FreePBX blocks docs/freepbx.md tells an admin to add are what astcti
renders, and the FreePBX-flavour lab runs exactly those blocks (so the lab verifies the doc)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from astcti import provision
from astcti.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "freepbx.md"
PLACEHOLDERS = {"ari_user": "astcti", "ari_password": "<the ARI secret>", "ami_user": "astcti",
                "ami_secret": "<the AMI secret>"}


def _settings(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith(";")]


def _doc_blocks() -> dict[str, str]:
    """file name -> the ini block the doc shows for it (the last file named before a block)."""
    text = DOC.read_text()
    blocks: dict[str, str] = {}
    for match in re.finditer(r"```ini\n(.*?)```", text, re.S):
        before = text[:match.start()]
        named = re.findall(r"/etc/asterisk/([a-z_]+\.conf)", before)
        blocks[named[-1]] = re.sub(r"^ {3}", "", match.group(1), flags=re.M)
    return blocks


def test_doc_blocks_are_what_astcti_renders_for_freepbx() -> None:
    rendered = provision.render("freepbx", PLACEHOLDERS)
    blocks = _doc_blocks()
    assert set(blocks) == {"http_custom.conf", "ari_general_custom.conf",
                           "ari_additional_custom.conf", "manager_custom.conf"}
    for name, block in blocks.items():
        assert _settings(block) == _settings(rendered[name]), name


def test_the_freepbx_lab_runs_the_admin_blocks_unchanged() -> None:
    variables = {**PLACEHOLDERS, "http_port": 8088, "sip_port": 5060, "phones": [],
                 "trunk_port": 5080, "trunk_ports": [5080], "freepbx_secret": "x",
                 "queue_number": "600", "ivr_number": "601"}
    admin = provision.render("freepbx", variables)
    lab = provision.render("lab-freepbx", variables)
    for name in ("http_custom.conf", "ari_general_custom.conf", "ari_additional_custom.conf",
                 "manager_custom.conf"):
        assert lab[name] == admin[name], name
    assert admin["extensions_custom.conf"].strip() in lab["extensions_custom.conf"]
    # FreePBX's generated files include the custom ones; astcti's routing is in none of them
    assert "#include http_custom.conf" in lab["http.conf"]
    assert "#include ari_general_custom.conf" in lab["ari.conf"]
    assert "#include manager_custom.conf" in lab["manager.conf"]
    assert not [line for line in _settings(lab["extensions.conf"]) if "astcti" in line]


def test_a_missing_secret_is_an_error_not_a_blank() -> None:
    with pytest.raises(ConfigError, match="ami_secret"):
        provision.render("freepbx", {"ari_user": "astcti", "ari_password": "x"})
