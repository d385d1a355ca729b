"""Render the Asterisk configuration from the Jinja2 templates in `asterisk-conf/`.

One source of truth for the lab, the Ansible roles and a hand install: a flavour names the
files it produces and the template each comes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from astcti.errors import ConfigError

FLAVOURS: dict[str, dict[str, str]] = {
    "asterisk": {
        "http.conf": "asterisk/http.conf.j2",
        "ari.conf": "asterisk/ari.conf.j2",
        "manager.conf": "asterisk/manager.conf.j2",
        "extensions_astcti.conf": "asterisk/extensions_astcti.conf.j2",
    },
}
# FreePBX: only the *_custom.conf files FreePBX includes from the files it generates (never
# those); each rendered text is the astcti block to place in that file.
FLAVOURS["freepbx"] = {
    "http_custom.conf": "freepbx/http_custom.conf.j2",
    "ari_general_custom.conf": "freepbx/ari_general_custom.conf.j2",
    "ari_additional_custom.conf": "freepbx/ari_additional_custom.conf.j2",
    "manager_custom.conf": "freepbx/manager_custom.conf.j2",
    "extensions_custom.conf": "asterisk/extensions_astcti.conf.j2",
}
# The lab's FreePBX 17 stand-in: astcti's blocks exactly as an admin adds them to a FreePBX box
# (the freepbx flavour above), and the files FreePBX itself would generate, reproduced in
# asterisk-conf/freepbx-lab/ (FreePBX's contexts and AstDB keys, no astcti routing).
FLAVOURS["lab-freepbx"] = {
    **FLAVOURS["freepbx"],
    "extensions_custom.conf": "freepbx-lab/extensions_custom.conf.j2",
    "extensions.conf": "freepbx-lab/extensions.conf.j2",
    "http.conf": "freepbx-lab/http.conf.j2",
    "ari.conf": "freepbx-lab/ari.conf.j2",
    "ari_additional.conf": "freepbx-lab/ari_additional.conf.j2",
    "manager.conf": "freepbx-lab/manager.conf.j2",
    "manager_additional.conf": "freepbx-lab/manager_additional.conf.j2",
    "queues.conf": "freepbx-lab/queues.conf.j2",
    "voicemail.conf": "freepbx-lab/voicemail.conf.j2",
    "modules.conf": "lab/modules.conf.j2",
    "logger.conf": "lab/logger.conf.j2",
    "rtp.conf": "lab/rtp.conf.j2",
    "pjsip.conf": "lab/pjsip.conf.j2",
}
FLAVOURS["lab"] = {
    **FLAVOURS["asterisk"],
    "modules.conf": "lab/modules.conf.j2",
    "logger.conf": "lab/logger.conf.j2",
    "rtp.conf": "lab/rtp.conf.j2",
    "pjsip.conf": "lab/pjsip.conf.j2",
    "queues.conf": "lab/queues.conf.j2",
    "extensions.conf": "lab/extensions.conf.j2",
}


def default_template_dir() -> Path:
    """`asterisk-conf/` of a source tree, or the copy installed with the package."""
    env = os.environ.get("ASTCTI_TEMPLATES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "asterisk-conf", Path("/usr/share/astcti/asterisk-conf")):
        if candidate.is_dir():
            return candidate
    raise ConfigError("cannot find the asterisk-conf templates: set ASTCTI_TEMPLATES")


def render(flavour: str, variables: Mapping[str, Any],
           template_dir: Path | None = None) -> dict[str, str]:
    """File name -> rendered text for a flavour; a missing variable is an error, not a blank."""
    if flavour not in FLAVOURS:
        raise ConfigError(f"unknown flavour {flavour!r}: use one of {', '.join(FLAVOURS)}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or default_template_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    out = {}
    for name, template in FLAVOURS[flavour].items():
        try:
            out[name] = env.get_template(template).render(**variables)
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{template}: {exc.message}: pass that variable")
    return out


def write(files: Mapping[str, str], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (dest / name).write_text(text)
