#!/usr/bin/python
# -*- coding: utf-8 -*-
# GPL-3.0-or-later (see the astcti package's copyright file)
"""Ansible module: make the astcti store hold the declared links, extensions, listeners, users
and parameters, changing only what differs.

Run it with the packaged venv's interpreter (``ansible_python_interpreter:
/opt/venvs/astcti/bin/python``): it uses ``astcti.store.Store`` directly, so it works before the
admin shell exists. Link passwords go through ``astcti encrypt-password``; an existing token is
decrypted and compared, so an unchanged password does not produce a new token (and a change).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: astcti_store
short_description: Declare rows of the astcti parameter store idempotently
description:
  - Compares the store with the declared rows and writes only the differences.
  - Optionally checks that listener ports are free (or held by astcti itself).
options:
  db:
    description: Store file.
    type: path
    default: /var/lib/astcti/astcti.db
  key:
    description: Key file the link passwords are encrypted with.
    type: path
    default: /etc/astcti/secret.key
  astcti_bin:
    description: The astcti command (for encrypt-password).
    type: path
    default: /usr/bin/astcti
  links:
    description:
      - Asterisk links, stored as acti_tlink_NN = ip#port#app,user,token.
      - With an ami entry (host, port, user, secret) also acti_amilink_NN = ip#port,user,token
        (same NN).
    type: list
    elements: dict
    default: []
  extensions:
    description: Watched extensions (number, technology).
    type: list
    elements: dict
    default: []
  listeners:
    description: Listeners (port, bind, allow, protocol, auth).
    type: list
    elements: dict
    default: []
  users:
    description: astcti users (username, password, role agent/supervisor/admin, extensions).
    type: list
    elements: dict
    default: []
  parameters:
    description: Other parameters (name -> value).
    type: dict
    default: {}
  exclusive:
    description: Remove links, extensions and listeners that are not declared.
    type: bool
    default: false
  check_ports:
    description: Fail when a listener port is held by another program.
    type: bool
    default: true
author: astcti developers
"""

RETURN = r"""
changes:
  description: What was (or, in check mode, would be) changed; secrets masked.
  type: list
  returned: always
restart:
  description: Links or parameters changed; the daemon reads them at start (restart it).
  type: bool
  returned: always
reload:
  description: Only listeners, extensions or users changed; `systemctl reload astcti` applies them.
  type: bool
  returned: always
"""

import os
import socket
import subprocess

from ansible.module_utils.basic import AnsibleModule

AMI_SPEC = dict(
    host=dict(type="str"),
    port=dict(type="int", default=5038),
    user=dict(type="str", default="astcti"),
    secret=dict(type="str", required=True, no_log=True),
)
LINK_SPEC = dict(
    id=dict(type="int"),
    host=dict(type="str", required=True),
    port=dict(type="int", default=8088),
    app=dict(type="str", default="astcti"),
    user=dict(type="str", required=True),
    password=dict(type="str", required=True, no_log=True),
    ami=dict(type="dict", options=AMI_SPEC),
)
EXTENSION_SPEC = dict(
    number=dict(type="str", required=True),
    technology=dict(type="str", default="PJSIP"),
)
LISTENER_SPEC = dict(
    port=dict(type="int", required=True),
    bind=dict(type="str", default="127.0.0.1"),
    allow=dict(type="str", default="*"),
    protocol=dict(type="str", required=True, choices=["astctirest", "astctiapi", "astctiws"]),
    auth=dict(type="str", default="token", choices=["token", "none"]),
)
USER_SPEC = dict(
    username=dict(type="str", required=True),
    password=dict(type="str", required=True, no_log=True),
    # agent by default: without extensions it may act on nothing (safe until the admin decides);
    # client: a user from before roles, which could do everything (astcti stores it as admin)
    role=dict(type="str", default="agent",
              choices=["agent", "supervisor", "admin", "client"]),
    extensions=dict(type="list", elements="str", default=[]),
)


def _listening_inodes(port):
    """Inodes of sockets listening on `port` (TCP, v4 and v6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                        inodes.add(fields[9])
        except (OSError, StopIteration):
            continue
    return inodes


def _holder(port):
    """(pid, command line) of the process listening on `port`, if /proc tells."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                try:
                    with open("/proc/%s/cmdline" % pid, "rb") as fh:
                        cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    cmd = "?"
                return int(pid), cmd
    return None


def _is_astcti(cmdline):
    return "/opt/venvs/astcti/" in cmdline or "/usr/bin/astcti" in cmdline


def port_problem(port, bind):
    """None when astcti can listen on bind:port; else one line naming the holder and the fix."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
        return None
    except OSError as exc:
        if exc.errno == 99:  # EADDRNOTAVAIL
            return ("listener bind address %s is not an address of this host: fix the bind of"
                    " port %d in astcti_listeners" % (bind, port))
        holder = _holder(port)
        if holder is not None and _is_astcti(holder[1]):
            return None
        who = "pid %d: %s" % holder if holder else "another program"
        return ("port %d on %s is in use by %s: pick another port in astcti_listeners or stop"
                " that program" % (port, bind, who))
    finally:
        sock.close()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            db=dict(type="path", default="/var/lib/astcti/astcti.db"),
            key=dict(type="path", default="/etc/astcti/secret.key"),
            astcti_bin=dict(type="path", default="/usr/bin/astcti"),
            links=dict(type="list", elements="dict", default=[], options=LINK_SPEC),
            extensions=dict(type="list", elements="dict", default=[], options=EXTENSION_SPEC),
            listeners=dict(type="list", elements="dict", default=[], options=LISTENER_SPEC),
            users=dict(type="list", elements="dict", default=[], options=USER_SPEC),
            parameters=dict(type="dict", default={}),
            exclusive=dict(type="bool", default=False),
            check_ports=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        from astcti.errors import AstctiError
        from astcti.pbx.linkconfig import parse_amilink, parse_link
        from astcti.secrets import load_key
        from astcti.store import Store
        from astcti.store.store import ListenerRow
    except ImportError as exc:
        module.fail_json(msg="cannot import astcti (%s): run this module with the packaged"
                             " interpreter /opt/venvs/astcti/bin/python" % exc)

    if p["check_ports"]:
        for lst in p["listeners"]:
            problem = port_problem(lst["port"], lst["bind"])
            if problem:
                module.fail_json(msg=problem)

    try:
        cipher = load_key(p["key"])
        store = Store.open(p["db"])
    except AstctiError as exc:
        module.fail_json(msg=str(exc))

    changes = []  # human-readable, secrets masked
    actions = []  # callables applied unless in check mode
    try:
        # -- links ---------------------------------------------------------------------------
        current = store.link_parameters()
        wanted_links = {}
        wanted_ami = {}
        for index, link in enumerate(p["links"], start=1):
            name = "acti_tlink_%02d" % (link["id"] or index)
            if name in wanted_links:
                module.fail_json(msg="two astcti_links entries make %s: give them distinct id"
                                     " values" % name)
            wanted_links[name] = link
            same = False
            if name in current:
                try:
                    have = parse_link(name, current[name], cipher)
                    same = (have.host, have.port, have.app, have.username, have.password) == (
                        link["host"], link["port"], link["app"], link["user"], link["password"])
                except AstctiError:
                    same = False
            if not same:
                changes.append("set %s = %s#%d#%s,%s,<encrypted>"
                               % (name, link["host"], link["port"], link["app"], link["user"]))
                actions.append(("link", name, link))
            ami = link["ami"]
            if ami is not None:
                ami_name = "acti_amilink_" + name[len("acti_tlink_"):]
                host = ami["host"] or link["host"]
                wanted_ami[ami_name] = True
                same = False
                stored = store.get_parameter(ami_name)
                if stored:
                    try:
                        have = parse_amilink(ami_name, stored, cipher)
                        same = (have.host, have.port, have.username, have.secret) == (
                            host, ami["port"], ami["user"], ami["secret"])
                    except AstctiError:
                        same = False
                if not same:
                    changes.append("set %s = %s#%d,%s,<encrypted>"
                                   % (ami_name, host, ami["port"], ami["user"]))
                    actions.append(("ami", ami_name, dict(ami, host=host)))
        if p["exclusive"]:
            for name in sorted(set(current) - set(wanted_links)):
                changes.append("delete %s" % name)
                actions.append(("unlink", name, None))
            have_ami = [n for n in store.parameters() if n.startswith("acti_amilink_")]
            for name in sorted(set(have_ami) - set(wanted_ami)):
                changes.append("delete %s" % name)
                actions.append(("unlink", name, None))
        restart = bool(changes)  # links are read when the daemon starts

        # -- parameters ----------------------------------------------------------------------
        for name, value in sorted(p["parameters"].items()):
            value = str(value)
            if store.get_parameter(name) != value:
                changes.append("set %s = %s" % (name, value))
                actions.append(("param", name, value))
                restart = True

        # -- extensions ----------------------------------------------------------------------
        have_ext = {e.number: e.technology for e in store.extensions()}
        wanted_ext = {e["number"]: e["technology"] for e in p["extensions"]}
        for number, tech in sorted(wanted_ext.items()):
            if have_ext.get(number) != tech:
                changes.append("add extension %s %s" % (number, tech))
                actions.append(("ext", number, tech))
        if p["exclusive"]:
            for number in sorted(set(have_ext) - set(wanted_ext)):
                changes.append("remove extension %s" % number)
                actions.append(("unext", number, None))

        # -- listeners -----------------------------------------------------------------------
        have_lst = {row.port: row for row in store.listeners()}
        wanted_lst = {}
        for lst in p["listeners"]:
            row = ListenerRow(lst["port"], lst["bind"], lst["allow"], lst["protocol"],
                              lst["auth"])
            wanted_lst[row.port] = row
            if have_lst.get(row.port) != row:
                changes.append("add listener %d %s %s allow %s auth %s"
                               % (row.port, row.bind, row.protocol, row.allow, row.auth))
                actions.append(("lst", row, None))
        if p["exclusive"]:
            for port in sorted(set(have_lst) - set(wanted_lst)):
                changes.append("remove listener %d" % port)
                actions.append(("unlst", port, None))

        # -- users ---------------------------------------------------------------------------
        for user in p["users"]:
            row = store.check_user(user["username"], user["password"])
            role = "admin" if user["role"] == "client" else user["role"]
            if row is None or row.role != role or \
                    list(row.extensions) != list(user["extensions"]):
                changes.append("set user %s (%s%s)" % (
                    user["username"], role,
                    " on " + ",".join(user["extensions"]) if user["extensions"] else ""))
                actions.append(("user", user, None))

        if actions and not module.check_mode:
            for kind, a, b in actions:
                if kind == "link":
                    token = _encrypt(module, p, b["password"])
                    store.set_parameter(a, "%s#%d#%s,%s,%s" % (b["host"], b["port"], b["app"],
                                                              b["user"], token),
                                        "Asterisk %s:%d" % (b["host"], b["port"]))
                elif kind == "ami":
                    token = _encrypt(module, p, b["secret"])
                    store.set_parameter(a, "%s#%d,%s,%s" % (b["host"], b["port"], b["user"], token),
                                        "Asterisk AMI %s:%d" % (b["host"], b["port"]))
                elif kind == "unlink":
                    store.delete_parameter(a)
                elif kind == "param":
                    store.set_parameter(a, b)
                elif kind == "ext":
                    store.add_extension(a, b)
                elif kind == "unext":
                    store.remove_extension(a)
                elif kind == "lst":
                    store.add_listener(a)
                elif kind == "unlst":
                    store.remove_listener(a)
                elif kind == "user":
                    store.set_user(a["username"], a["password"], a["role"], a["extensions"])
    except AstctiError as exc:
        module.fail_json(msg=str(exc))
    finally:
        store.close()
    _fix_owner(p["db"])
    diff = {"before": "", "after": "".join(c + "\n" for c in changes)}
    module.exit_json(changed=bool(changes), changes=changes, diff=diff, restart=restart,
                     reload=bool(changes) and not restart)


def _encrypt(module, p, password):
    """A token from `astcti encrypt-password` (the documented way), password on stdin."""
    proc = subprocess.run([p["astcti_bin"], "--key", p["key"], "encrypt-password"],
                          input=password + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        module.fail_json(msg="astcti encrypt-password failed: %s" % proc.stderr.strip())
    return proc.stdout.strip()


def _fix_owner(db):
    """SQLite side files created by this (root) process must stay the daemon's."""
    try:
        st = os.stat(db)
    except OSError:
        return
    for suffix in ("", "-wal", "-shm"):
        path = db + suffix
        if os.path.exists(path):
            try:
                os.chown(path, st.st_uid, st.st_gid)
            except OSError:
                pass


if __name__ == "__main__":
    main()
