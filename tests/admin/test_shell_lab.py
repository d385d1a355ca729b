"""astcti-shell against the lab's running daemon: a real terminal (tmux) and scripts.

Every change must reach the running daemon at once: clients see it (startmonitor, a new port,
live trace lines of a real SIPp call) and the store keeps it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from astcti.client import CtiClient, CtiError
from astcti.secrets import decrypt, encrypt, load_key
from tests.admin.conftest import one_error, run_shell, store_state
from tests.lab import Lab

pytestmark = pytest.mark.lab


def shell(lab: Lab, *commands: str, stdin: str = "", **kw):
    args = ["--socket", lab.config.admin_socket]
    for command in commands:
        args += ["-c", command]
    return run_shell(*args, stdin=stdin, **kw)


def ok(out) -> str:
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    return out.stdout


async def client(lab: Lab, port: int | None = None, user: str | None = None,
                 password: str | None = None) -> CtiClient:
    c = lab.config
    url = f"ws://127.0.0.1:{port}/" if port else c.ws_url
    return await CtiClient.websocket(url, user or c.astcti_user, password or c.astcti_password)


async def test_interactive_shell_drives_the_running_daemon(lab: Lab, tmux_factory,
                                                           tmp_path: Path) -> None:
    c = lab.config
    term = tmux_factory("--socket", c.admin_socket)
    term.wait_for("astcti>")

    # Tab completes the seed's words
    term.type("upd", enter=False)
    term.wait_for("astcti> upd")
    term.send("Tab")
    term.wait_for("astcti> update")
    term.send("C-u")

    # add extension 105: a client can monitor it at once and sees its calls
    term.type("add extension 105 PJSIP")
    term.wait_for("extension 105 added: PJSIP/105, watched on acti_tlink_01")
    assert ("105", "PJSIP") in [(e.number, e.technology) for e in store_state(c.db)["extensions"]]
    cti = await client(lab)
    try:
        await cti.request("startmonitor", extension="105")
        lab.start_phone("105")
        caller = lab.call("105", talk_ms=500)
        await cti.expect("delivered", extension="105")
        await cti.expect("established", extension="105")
        assert await asyncio.to_thread(caller.wait, 30) == 0
        assert lab.phones["105"].received("INVITE")

        # removing a monitored extension asks first; the client is told
        term.type("remove extension 105")
        term.wait_for("monitored by 1 client(s): remove it anyway? [y/N]")
        term.type("y")
        term.wait_for("extension 105 removed and no longer watched; 1 monitoring client(s) told")
        down = await cti.expect("linkdown", extension="105")
        assert "removed" in down["reason"]
        with pytest.raises(CtiError, match="unknown extension 105"):
            await cti.request("startmonitor", extension="105")
    finally:
        lab.stop_phone("105")
        await cti.close()
    assert "105" not in [e.number for e in store_state(c.db)["extensions"]]

    # add tcp: a new WebSocket port that a client can use at once
    port = 9011 + c.port_offset
    term.type(f"add tcp {port} 127.0.0.1 * custom astctiws")
    term.wait_for(f"listener {port} added: astctiws on 127.0.0.1:{port}, allow *, auth token;"
                  " listening now")
    extra = await client(lab, port)
    try:
        assert (await extra.request("startmonitor", extension="101"))["result"] == "success"
    finally:
        await extra.close()
    term.type(f"remove tcp {port}")
    term.wait_for(f"listener {port} removed and closed")
    with pytest.raises(aiohttp.ClientError):
        await client(lab, port)

    # trace on asc: the CTI events of a real call stream into the terminal until Ctrl-C
    term.type("trace on asc")
    mark = term.wait_for("trace asc on").index("trace asc on")
    lab.start_phone("101")
    watcher = await client(lab)
    try:
        await watcher.request("startmonitor", extension="101")
        caller = lab.call("101", talk_ms=500)
        assert await asyncio.to_thread(caller.wait, 30) == 0
        await watcher.expect("connectioncleared", extension="101")
    finally:
        await watcher.close()
        lab.stop_phone("101")
    screen = term.wait_for('"event":"connectioncleared","extension":"101"', after=mark)
    traced = screen[mark:]
    assert ' asc {"msgtype":"event","event":"delivered","extension":"101"' in traced
    assert '"event":"established","extension":"101"' in traced
    term.send("C-c")
    term.wait_for("trace off (asc)", after=mark)

    # passwords are prompted for, twice, and never echoed
    term.type("add user carol agent 101")
    term.wait_for("a password for the new user:")
    term.type("carol-secret-1")
    term.wait_for("again:")
    term.type("carol-secret-1")
    screen = term.wait_for("user carol added (role agent, extensions 101)")
    assert "carol-secret-1" not in screen
    carol = await client(lab, user="carol", password="carol-secret-1")
    await carol.close()

    # unknown command: the nearest one is suggested, in the terminal too
    term.type("shwo links")
    term.wait_for("error: unknown command `shwo links`: did you mean `show links`?")
    # colour on a terminal: the error line is red
    error_line = next(line for line in term.screen(escapes=True).splitlines()
                      if "did you mean `show links`" in line)
    assert "\x1b[" in error_line and "31m" in error_line, repr(error_line)
    term.type("quit")
    history = (tmp_path / ".astcti_shell_history").read_text()
    assert "add extension 105 PJSIP" in history and "carol-secret-1" not in history
    ok(shell(lab, "remove user carol"))


async def test_every_command_non_interactively(lab: Lab) -> None:
    c = lab.config
    port = 9012 + c.port_offset
    assert "commands (help COMMAND" in ok(shell(lab, "help"))
    assert "example: add tcp 9011 127.0.0.1 * custom astctiws" in ok(shell(lab, "help add tcp"))
    ok(shell(lab, "quit"))
    ok(shell(lab, "exit"))
    params = ok(shell(lab, "show parameters"))
    assert "\x1b[" not in params  # no colour when not on a terminal
    assert "acti_tlink_01" in params and "***" in params
    token = store_state(c.db)["parameters"]["acti_tlink_01"].rsplit(",", 1)[1]
    assert token not in params
    assert "acti_heartbeat = 2" in ok(shell(lab, "show parameter acti_heartbeat"))
    assert "acti_resume_age = 301.0 (was 300)" in ok(shell(lab,
                                                         "update parameter acti_resume_age 301"))
    ok(shell(lab, "update parameter acti_resume_age 300"))
    exts = ok(shell(lab, "show extensions"))
    assert "101        PJSIP/101  acti_tlink_01  up     " in exts and "reoffer (default)" in exts
    assert f"{c.ws_port}  127.0.0.1  *      astctiws" in ok(shell(lab, "show tcp"))
    links = ok(shell(lab, "show links"))
    assert "acti_tlink_01" in links and " up " in links and " 22." in links
    ami_row = next(line for line in links.splitlines() if line.startswith("acti_amilink_01"))
    assert f"127.0.0.1:{c.ami_port}" in ami_row and " up " in ami_row and " AMI " in ami_row
    assert "no agent is logged in" in ok(shell(lab, "show agents"))  # AcdService, nobody in
    assert "no calls" in ok(shell(lab, "show calls"))

    async with await client(lab) as cti:
        await cti.request("startmonitor", extension="102")
        monitors = ok(shell(lab, "show monitors"))
        assert "102" in monitors and c.astcti_user in monitors
        # a call in progress shows in show calls
        lab.start_phone("102")
        try:
            caller = lab.call("102", talk_ms=20000)  # a shell starts slowly on a busy host
            est = await cti.expect("established", extension="102")
            calls = ok(shell(lab, "show calls"))
            assert "102" in calls and "connected" in calls and "incoming" in calls
            await cti.request("hangup", extension="102", callid=est["callid"])
            assert await asyncio.to_thread(caller.wait, 30) == 0
        finally:
            lab.stop_phone("102")
        # removing a monitored extension from a script needs --force
        line = one_error(shell(lab, "remove extension 102"))
        assert "monitored by 1 client(s): add --force" in line
        assert "102" in [e.number for e in store_state(c.db)["extensions"]]
    ok(shell(lab, "add extension 105"))
    assert "removed" in ok(shell(lab, "remove extension 105 --force"))

    out = ok(shell(lab, f"add tcp {port} 127.0.0.1 * custom astctiws"))
    assert "listening now" in out
    assert "removed and closed" in ok(shell(lab, f"remove tcp {port}"))

    # users: passwords from stdin
    assert "user dave added (role admin)" in ok(shell(lab, "add user dave admin",
                                                      stdin="dave-pass-1\n"))
    assert "dave" in ok(shell(lab, "show users"))
    async with await client(lab, user="dave", password="dave-pass-1") as dave:
        token_reply = await dave.request("login", username="dave", password="dave-pass-1")
    assert "password of dave changed" in ok(shell(lab, "passwd user dave",
                                                  stdin="dave-pass-2\n"))
    with pytest.raises(CtiError, match="login failed"):
        await client(lab, user="dave", password="dave-pass-1")
    with pytest.raises(CtiError, match="login failed"):  # the old token was revoked
        await CtiClient.websocket(c.ws_url, token=token_reply["token"])
    assert "user dave removed" in ok(shell(lab, "remove user dave"))

    encrypted = ok(shell(lab, "encrypt password", stdin="ari-pass-9\n")).strip()
    assert decrypt(load_key(c.key), encrypted, what="t") == "ari-pass-9"


async def test_trace_non_interactive_streams_until_interrupted(lab: Lab) -> None:
    """`astcti-shell -c "trace on ari"` streams ARI lines of a real call; SIGINT ends it."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "astcti.admin.shell", "--socket",
                             lab.config.admin_socket, "-c", "trace on ari", "-c",
                             "trace on client"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines: list[str] = []

        async def read_until(text: str) -> None:
            while not any(text in line for line in lines):
                line = await asyncio.to_thread(proc.stdout.readline)
                assert line, f"shell ended early: {lines} {proc.stderr.read()}"
                lines.append(line)

        await asyncio.wait_for(read_until("trace client on"), 20)
        lab.start_phone("103")
        try:
            async with await client(lab):  # a login: traced, password masked
                caller = lab.call("103", talk_ms=300)
                assert await asyncio.to_thread(caller.wait, 30) == 0
            await asyncio.wait_for(read_until("ChannelDestroyed PJSIP/103-"), 20)
        finally:
            lab.stop_phone("103")
        await asyncio.wait_for(read_until('"request":"login"'), 20)
        text = "".join(lines)
        assert " ari acti_tlink_01 ChannelStateChange PJSIP/103-" in text
        assert lab.config.astcti_password not in text and '"password":"***"' in text
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.to_thread(proc.communicate, timeout=20)
        assert proc.returncode == 0, err
        assert "trace off (ari, client)" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_bad_input_is_one_line_and_changes_nothing(lab: Lab) -> None:
    c = lab.config
    before = store_state(c.db)
    cases = [
        ("shwo links", "", "did you mean `show links`?"),
        ("add extension", "", "usage: add extension NUM [TECH]"),
        ("add extension 105 H323", "", "unknown technology 'H323'"),
        ("add tcp 70000 127.0.0.1 * custom astctiws", "", "invalid port '70000'"),
        ("add tcp 9413 127.0.0.1 10.1.1.0/40 custom astctiws", "", "is not an address or CIDR"),
        ("add tcp 9413 127.0.0.1 * custom astctiweb", "", "invalid protocol 'astctiweb'"),
        (f"add tcp {c.ari_port} 127.0.0.1 * custom astctiws", "", "port in use"),
        (f"add tcp {c.ws_port} 127.0.0.1 * custom astctiws auth=sometimes", "", "auth=token"),
        ("update parameter acti_defaultexttype ZAP", "", "unknown technology 'ZAP'"),
        ("update parameter acti_heartbeat soon", "", "expected a number"),
        ("update parameter acti_tlink_01 127.0.0.1#8088#astcti", "", "needs app,username"),
        (f"update parameter acti_tlink_01 127.0.0.1#{c.ari_port}#astcti,astcti,bm90IGEgdG9rZW4=",
         "", "does not decrypt with this key"),
        ("update parameter acti_unknown 1", "", "unknown parameter acti_unknown"),
        ("show parameter acti_unknown", "", "unknown parameter acti_unknown"),
        ("remove extension 199", "", "extension 199 is not configured"),
        ("remove tcp 9499", "", "no listener on port 9499"),
        ("add user agent", "long-enough-1\n", "user agent exists"),
        ("add user erin", "short\n", "password too short"),
        ("add user erin", "", "no more input on stdin"),
        ("passwd user ghost", "whatever-123\n", "no user ghost"),
        ("remove user ghost", "", "no user ghost"),
        ("encrypt password", "\n", "empty password"),
        ("trace on", "", "trace on needs a channel"),
        ("trace on sip", "", "invalid trace channel 'sip'"),
        ("show links please", "", "usage: show links"),
        ("help frobnicate", "", "no help for `frobnicate`"),
    ]
    import astcti.admin.commands  # noqa: F401
    from astcti.admin.language import COMMANDS
    for cmd in COMMANDS.values():  # every command: too many words is exit 1 with its usage
        if not any(a.rest for a in cmd.args):
            cases.append((cmd.phrase + " x" * (len(cmd.args) + 1), "",
                          f"wrong number of arguments for `{cmd.phrase}`: usage: {cmd.usage}"))
    for command, stdin, words in cases:
        line = one_error(shell(lab, command, stdin=stdin))
        assert words in line, (command, line)
    assert store_state(c.db) == before
    # the daemon kept serving, its link untouched
    assert " up " in ok(shell(lab, "show links"))
    async with await client(lab) as cti:
        await cti.request("startmonitor", extension="101")


async def test_link_parameter_restarts_the_link(lab: Lab) -> None:
    c = lab.config
    value = store_state(c.db)["parameters"]["acti_tlink_01"]
    fresh = value.rsplit(",", 1)[0] + "," + encrypt(load_key(c.key), c.ari_password)
    out = ok(shell(lab, f"update parameter acti_tlink_01 {fresh}"))
    assert "link restarted: connected to Asterisk 22." in out
    assert fresh.rsplit(",", 1)[1] not in out
    assert store_state(c.db)["parameters"]["acti_tlink_01"] == fresh
    # the restarted link serves the extensions again
    async with await client(lab) as cti:
        await cti.request_until_ok("startmonitor", extension="104")


async def test_ami_link_parameter_restarts_the_ami_link(lab: Lab) -> None:
    """A wrong AMI port is stored and reported (the daemon keeps serving); the right one
    reconnects. ARI is untouched meanwhile."""
    c = lab.config
    value = store_state(c.db)["parameters"]["acti_amilink_01"]
    wrong = value.replace(f"#{c.ami_port},", "#1,")
    out = ok(shell(lab, f"update parameter acti_amilink_01 {wrong}"))
    assert "AMI link restarted: not connected yet" in out and "cannot reach AMI" in out
    row = next(x for x in ok(shell(lab, "show links")).splitlines()
               if x.startswith("acti_amilink_01"))
    assert " down " in row and "127.0.0.1:1 " in row
    out = ok(shell(lab, f"update parameter acti_amilink_01 {value}"))
    assert f"AMI link restarted: connected to 127.0.0.1:{c.ami_port} as {c.ami_user}" in out
    assert value.rsplit(",", 1)[1] not in out
    links = ok(shell(lab, "show links"))
    assert all(" up " in x for x in links.splitlines()[1:]), links


def test_permission_denied_on_the_socket(lab: Lab) -> None:
    """Not root, not in group astcti: one line, exit 2, nothing changed."""
    before = store_state(lab.config.db)
    line = one_error(shell(lab, "add extension 107", user="65534"), 2)
    assert "permission denied" in line and "group astcti" in line
    assert store_state(lab.config.db) == before
