#!/usr/bin/python
# -*- coding: utf-8 -*-
# GPL-3.0-or-later (see the astcti package's copyright file)
"""Ansible module: keep astcti's part of an Asterisk configuration file (http.conf, ari.conf,
manager.conf) in one marked block and leave everything else in the file as it is.

Asterisk reads the first category of a name only, so the block adds to an existing section
with `[general](+)` (Asterisk's "append to the category above"); a file without that section
gets an empty `[general]` line first. Options of the section written elsewhere in the file are
read: list options (channelvars) are merged with ours, and a different value of an option
astcti relies on (bindaddr, bindport) fails with one line instead of silently overriding another
application's setting.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asterisk_config_block
short_description: Keep astcti's settings in a marked block of an Asterisk configuration file
description:
  - Writes I(options) under C([section](+)) and I(text) after them, between two marker
    comments, and nothing outside the markers (but an empty C([section]) line when the file
    lacks that section).
  - A file whose first line is I(legacy_header) was written whole by an earlier version of the
    role; it is reduced to the block.
options:
  path:
    description: The configuration file.
    type: path
    required: true
  section:
    description: The section the options belong to.
    type: str
    default: general
  fragment:
    description:
      - The file is included inside I(section) of another file (FreePBX's
        ari_general_custom.conf): options are written without a section line.
    type: bool
    default: false
  options:
    description: Option name to value, written in this order.
    type: dict
    default: {}
  text:
    description: Further configuration text for the block (e.g. a user section).
    type: str
    default: ""
  merge:
    description: Options whose comma-separated values are merged with the file's own.
    type: list
    elements: str
    default: []
  keep:
    description:
      - Options the file may already set in I(section): a different value there fails the
        task naming both values, rather than overriding another application's setting.
    type: list
    elements: str
    default: []
  own_sections:
    description: Sections only the block may define (an existing one elsewhere fails the task).
    type: list
    elements: str
    default: []
  legacy_header:
    description: First line of a file an earlier version of the role wrote whole.
    type: str
    default: ""
  marker:
    description: Text of the marker comments; {mark} becomes BEGIN or END.
    type: str
    default: "; {mark} astcti (managed by Ansible role asterisk_ari)"
  owner:
    description: Owner of the file.
    type: str
  group:
    description: Group of the file.
    type: str
  mode:
    description: Mode of the file.
    type: raw
  backup:
    description: Keep a time-stamped copy of the file before changing it.
    type: bool
    default: false
author: astcti developers
"""

RETURN = r"""
existing:
  description: Options of I(section) set outside the block, as the file has them.
  type: dict
  returned: always
"""

import os
import re
import tempfile

_CATEGORY = re.compile(r"^\s*\[([^\]]+)\]\s*(\(([^)]*)\))?")
_OPTION = re.compile(r"^\s*([A-Za-z0-9_.()-]+)\s*=>?\s*(.*?)\s*$")


def strip_comment(line):
    """The line without its `;` comment (`\\;` is a literal semicolon in Asterisk)."""
    out = []
    i = 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line) and line[i + 1] == ";":
            out.append(";")
            i += 2
            continue
        if line[i] == ";":
            break
        out.append(line[i])
        i += 1
    return "".join(out)


def split_block(lines, begin, end):
    """(lines outside the block, lines of the block or None)."""
    try:
        start = lines.index(begin)
        stop = lines.index(end, start)
    except ValueError:
        return lines, None
    return lines[:start] + lines[stop + 1:], lines[start:stop + 1]


def read_sections(lines, top=None):
    """Section name -> {option: value} (later values win, as Asterisk reads them); options
    before any section line belong to `top` (a fragment included inside that section)."""
    sections = {top: {}} if top else {}
    current = top
    for raw in lines:
        line = strip_comment(raw).strip()
        if not line or line.startswith("#"):
            continue
        m = _CATEGORY.match(line)
        if m:
            current = m.group(1).strip()
            sections.setdefault(current, {})
            continue
        m = _OPTION.match(line)
        if m and current is not None:
            sections[current][m.group(1).lower()] = m.group(2)
    return sections


def merged(theirs, ours):
    """theirs, then ours, comma-separated, each name once."""
    out = []
    for item in (theirs or "").split(",") + ours.split(","):
        item = item.strip()
        if item and item not in out:
            out.append(item)
    return ",".join(out)


def build(params, current_text):
    """(new text, existing options of the section, failure message or None)."""
    begin = params["marker"].replace("{mark}", "BEGIN")
    end = params["marker"].replace("{mark}", "END")
    lines = current_text.splitlines()
    if params["legacy_header"] and lines and lines[0].startswith(params["legacy_header"]):
        lines = []
    outside, _ = split_block(lines, begin, end)
    section = params["section"]
    fragment = params["fragment"]
    sections = read_sections(outside, section if fragment else None)
    existing = dict(sections.get(section, {}))
    for name in params["own_sections"]:
        if name in sections:
            return None, existing, (
                "%s already defines [%s] outside astcti's block: remove that section (astcti's"
                " block defines it) or let the role leave it alone" % (params["path"], name))
    options = []
    for name, value in params["options"].items():
        value = str(value)
        have = existing.get(name.lower())
        if name in params["merge"]:
            value = merged(have, value)
        elif name in params["keep"] and have is not None and have != value:
            return None, existing, (
                "%s sets %s = %s in [%s] (another application's setting?) but astcti needs %s:"
                " make them agree (change the role's variable, or that line)"
                % (params["path"], name, have, section, value))
        options.append("%s = %s" % (name, value))
    head = [] if fragment or section in sections else ["[%s]" % section]
    while outside and not outside[-1].strip():
        outside = outside[:-1]
    block = [begin] + ([] if fragment else ["[%s](+)" % section]) + options
    if params["text"].strip():
        block += [""] + params["text"].strip("\n").splitlines()
    block.append(end)
    body = head + outside + ([""] if outside or head else []) + block
    return "\n".join(body) + "\n", existing, None


def main():
    # Imported here so the text functions above can be tested without Ansible installed.
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            section=dict(type="str", default="general"),
            fragment=dict(type="bool", default=False),
            options=dict(type="dict", default={}),
            text=dict(type="str", default=""),
            merge=dict(type="list", elements="str", default=[]),
            keep=dict(type="list", elements="str", default=[]),
            own_sections=dict(type="list", elements="str", default=[]),
            legacy_header=dict(type="str", default=""),
            marker=dict(type="str", default="; {mark} astcti (managed by Ansible role asterisk_ari)"),
            backup=dict(type="bool", default=False),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        with open(path) as fh:
            current = fh.read()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, exc.strerror))
    text, existing, problem = build(module.params, current or "")
    if problem:
        module.fail_json(msg=problem, existing=existing)
    changed = text != current
    result = dict(changed=changed, existing=existing,
                  diff=dict(before=current or "", after=text, before_header=path,
                            after_header=path))
    if changed and not module.check_mode:
        if current is not None and module.params["backup"]:
            result["backup_file"] = module.backup_local(path)
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".astcti-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        module.atomic_move(tmp, path)
    file_args = module.load_file_common_arguments(module.params)
    result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
