"""Generate docs/admin-shell.md from the command declarations.

`python -m astcti.admin.docs > docs/admin-shell.md`; a test fails when the file is out of date.
"""

from __future__ import annotations

import sys

import astcti.admin.commands  # noqa: F401  (registers every command)
from astcti.admin.language import COMMANDS
from astcti.admin.trace import CHANNEL_DOCS

INTRO = """# astcti-shell: the administration console

`astcti-shell` administers a running astcti: it replaces the seed's telnet console on port 14021
(and its fixed tcpgate password) and keeps its command words, so `add extension 101 PJSIP`,
`update parameter acti_defaultexttype PJSIP`, `add tcp 9001 * * custom astctirest`,
`trace on asc` and `help` work as before. Every change is checked first (bad input changes
nothing), then takes effect in the running daemon at once and is saved in the store; the reply
says what changed.

## Reaching the daemon, and who may

The daemon serves an admin API on a Unix socket: `/run/astcti/admin.sock` by default
(`astcti serve --admin-socket PATH`, env `ASTCTI_ADMIN_SOCKET`; `astcti-shell --socket PATH`).
The socket is mode 0660 and belongs to group `astcti-admin` when that group exists (the
package creates it): **membership of group `astcti-admin` (or root) is the authorisation**, there
is no password to leak. Grant an operator with `adduser alice astcti-admin` (effective at their
next login). That group gives no read access to the store (`/var/lib/astcti`, group `astcti`:
password hashes, encrypted ARI/AMI secrets). Another group can be named with env
`ASTCTI_ADMIN_GROUP` on the daemon. The daemon logs each change with the caller's uid, never
a password.

## Modes

| how | what |
| --- | --- |
| `astcti-shell` | interactive: Tab completes commands, parameter names, extensions, listener ports, users; history in `~/.astcti_shell_history` (`--history`, env `ASTCTI_SHELL_HISTORY`); colour only on a terminal (`NO_COLOR` turns it off) |
| `astcti-shell -c "show links"` | runs the command(s) (repeat `-c`) and exits |
| `astcti-shell < script` | runs one command a line (blank lines and `# comments` skipped), stops at the first failure and names its line |
| `astcti-shell --db PATH [--key PATH]` | when the daemon is not running: edits the store directly for the commands marked *offline* below; the others say they need the daemon |

Exit status: 0 success, 1 a command failed (its error line is on stderr), 2 astcti cannot be
reached (not running, permission denied) or bad usage. Passwords (`add user`, `passwd user`,
`encrypt password`) are never typed on the command line: the shell prompts for them (twice), or
reads them from the next line of stdin when not on a terminal.

`remove extension` of an extension clients monitor asks for confirmation (non-interactive: add
`--force`); its monitoring clients receive `linkdown`.

`trace on CHANNEL` streams live lines until `trace off [CHANNEL]` or Ctrl-C; with `-c` it
streams until interrupted (Ctrl-C / SIGTERM). Channels:

""" + "\n".join(f"- `{c}`: {d}" for c, d in CHANNEL_DOCS.items()) + """

## Users: roles, extensions, dial policy

Each client login has a role and the extensions it acts on; one check in the daemon applies them
to every request on every transport (docs/protocol.md, "Who may do what"):

| role | may |
| --- | --- |
| `agent` | monitor and control its own extensions only |
| `supervisor` | monitor any extension and read queue/agent state (wallboard); control its own |
| `admin` | everything |

    add user alice agent 101,102        # prompts for the password
    add user sam supervisor 110
    update user alice extensions 103    # or: update user alice role supervisor
    show users

A change applies to the user's live connections at their next request, and the monitors it may
no longer have end at once; `remove user` ends its tokens and connections. **Upgrading**: users
made before roles existed could do everything, so the upgrade makes them `admin` and
`show users` says so in its note column (`from before roles, so admin: narrow it with ...`)
until you set their role or extensions.

The numbers a role may dial (makecall, consultation, single-step transfer and conference) are
the parameters `acti_dial_agent`, `acti_dial_supervisor` and `acti_dial_admin`: a comma list of
`internal` (configured extensions) and Asterisk patterns. The default `internal,_0[1-7]X.`
allows extensions and national numbers of trunk-prefix-0 plans and refuses international
(`00`, `+`) and special/premium ranges (`08`, `09`); a refusal names the pattern to add, e.g.
`update parameter acti_dial_agent internal,_0[1-7]X.,_0044X.`. North American plans:
`internal,_NXXNXXXXXX,_1[2-8]XXNXXXXXX` (1-9XX, where the 900 premium range lives, stays refused).

## Listeners without login, browsers, Asterisk on another host

- `add tcp PORT BIND ALLOW custom PROTOCOL auth=none` (legacy CRMs that cannot log in) needs
  ALLOW to name the hosts that may use it, e.g. `10.0.0.5/32`; `*` is refused (any web page a
  user opens could otherwise place calls through the user's browser) unless you add `--force`.
  Browser pages of other sites are refused on every HTTP and WebSocket listener unless their
  origin is in `acti_origins` (docs/frontends.md, "Listener rules").
- ARI to an Asterisk on another host goes over TLS: write the link
  `update parameter acti_tlink_01 https://pbx.example.com#8089#astcti,astcti,ENCRYPTED` (its
  http.conf: `tlsenable=yes`, `tlsbindaddr=0.0.0.0:8089`, `tlscertfile`, `tlsprivatekey`). The
  certificate is verified, host name included, against the system's CAs or the PEM file of
  `update parameter acti_ari_cafile /etc/astcti/pbx-ca.pem` (the TLS links restart with it). A
  certificate astcti cannot trust is one line in `show links` (`... is not trusted ...: give the
  CA that signed it with update parameter acti_ari_cafile ...`); astcti never falls back to
  clear text.

Unknown commands get the nearest known one suggested (`shwo links` -> `show links`); wrong
arity prints the usage and an example.
"""

GROUPS = {"shell": "Shell", "parameters": "Parameters", "extensions": "Extensions",
          "listeners": "Client listeners", "seating": "Free seating (client address ->"
          " extension)", "agents": "ACD agents", "status": "Live status", "users": "Users",
          "general": "Other"}


def render() -> str:
    out = [INTRO.rstrip(), "", "## Commands", ""]
    by_group: dict[str, list] = {}
    for cmd in COMMANDS.values():
        by_group.setdefault(cmd.group, []).append(cmd)
    for group, title in GROUPS.items():
        if group not in by_group:
            continue
        out += [f"### {title}", ""]
        for cmd in by_group[group]:
            out += [f"#### `{cmd.usage}`", "", cmd.doc, ""]
            for arg in cmd.args:
                if arg.doc:
                    out.append(f"- `{arg.name}`{' (optional)' if arg.optional else ''}: "
                               f"{arg.doc}")
            if cmd.secret:
                out.append(f"- prompts for {cmd.secret}")
            out.append(f"- example: `{cmd.example}`")
            out.append("- offline (`--db`): " + ("yes" if cmd.offline else "no, needs the daemon"))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
