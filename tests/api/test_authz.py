"""Who may do what: the one check in the dispatcher, through every transport, on a daemon
without Asterisk (the refusals come before any PBX work, so they need none)."""

from __future__ import annotations

import aiohttp
import pytest

from astcti.admin.language import Context, execute, tokenize
from astcti.api.authz import (
    ADMIN, CONTROL, MONITOR, SESSION, SUPERVISE, Authoriser, Identity, may,
)
from astcti.api.protocol import RequestError
from astcti.client import CtiClient, CtiError
from astcti.cti.directory import Directory
from astcti.store import Store
from tests.api.conftest import LocalDaemon

PASSWORD = "long-enough-password"
AGENT = Identity("alice", "agent", frozenset({"101"}))
SUPERVISOR = Identity("sam", "supervisor", frozenset({"102"}))
ADMINISTRATOR = Identity("root", "admin")


@pytest.mark.parametrize("identity, access, extension, allowed", [
    (AGENT, MONITOR, "101", True), (AGENT, MONITOR, "102", False),
    (AGENT, CONTROL, "101", True), (AGENT, CONTROL, "102", False),
    (AGENT, CONTROL, None, False), (AGENT, SUPERVISE, None, False), (AGENT, ADMIN, None, False),
    (AGENT, SESSION, None, True), (AGENT, SESSION, "102", True),
    (SUPERVISOR, MONITOR, "101", True), (SUPERVISOR, CONTROL, "101", False),
    (SUPERVISOR, CONTROL, "102", True), (SUPERVISOR, SUPERVISE, None, True),
    (SUPERVISOR, ADMIN, None, False),
    (ADMINISTRATOR, CONTROL, "101", True), (ADMINISTRATOR, ADMIN, None, True),
    (Identity("nobody", "agent"), MONITOR, "101", False),
])
def test_the_rule(identity: Identity, access: str, extension: str | None,
                  allowed: bool) -> None:
    assert may(identity, access, extension) is allowed


def test_a_dial_policy_is_read_again_after_a_write_or_a_reload_not_at_every_request(
        tmp_path) -> None:
    """The policy is cached (a SQLite read per makecall cost ~70 us before its originate):
    a write through the daemon's store (`update parameter`) applies at the next request, a
    change made by another process at the reload (which reads every parameter)."""
    store = Store.open(tmp_path / "a.db", create=True)
    authoriser = Authoriser(store, Directory())
    agent = Identity("alice", "agent", frozenset({"101"}))
    with pytest.raises(RequestError, match="add _0044X. to parameter acti_dial_agent"):
        authoriser.check_dial(agent, "0044201234567")
    store.set_parameter("acti_dial_agent", "internal,_0044X.")
    authoriser.check_dial(agent, "0044201234567")
    other = Store.open(tmp_path / "a.db")  # an offline astcti-shell, the Ansible role
    other.set_parameter("acti_dial_agent", "internal")
    authoriser.check_dial(agent, "0044201234567")  # not re-read yet
    store.parameters()  # the daemon's reload
    with pytest.raises(RequestError, match="may not dial 0044201234567"):
        authoriser.check_dial(agent, "0044201234567")
    other.close()
    store.close()


async def _admin(d: LocalDaemon, line: str, secret: str | None = None) -> str:
    store = d.daemon.store
    assert store is not None
    return await execute(tokenize(line), Context(store, d.daemon, secret=secret))


async def _clients(d: LocalDaemon, user: str) -> list[tuple[str, CtiClient]]:
    return [
        ("ws", await CtiClient.websocket(f"ws://127.0.0.1:{d.ports['astctiws']}/", user,
                                         PASSWORD)),
        ("tcp", await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], user, PASSWORD)),
        ("rest", await CtiClient.rest(d.rest_url, user, PASSWORD)),
    ]


async def _error(client: CtiClient, name: str, **fields: object) -> str:
    with pytest.raises(CtiError) as err:
        await client.request(name, **fields)
    return err.value.reply["error"]


async def test_agent_acts_on_its_own_extensions_only_on_every_transport(
        local_daemon: LocalDaemon) -> None:
    d = local_daemon
    assert "role agent, extensions 101" in await _admin(d, "add user alice agent 101", PASSWORD)
    for transport, client in await _clients(d, "alice"):
        async with client:
            refused = "not allowed: user alice may not act on extension 102"
            for name, fields in [("startmonitor", {}), ("snapshot", {}), ("acdgetstate", {}),
                                 ("hangup", {"callid": "1.2"}),
                                 ("acdlogin", {"agentid": "7001"}),
                                 ("userdata", {"callid": "1.2"}),
                                 ("makecall", {"destination": "101"})]:
                assert await _error(client, name, extension="102", **fields) == refused, \
                    (transport, name)
            # its own extension passes the check, then meets the missing Asterisk
            assert "no Asterisk link is configured" in await _error(client, "startmonitor",
                                                           extension="101")
            assert await _error(client, "makecall", extension="101",
                                destination="0044201234567") == (
                "not allowed: user alice (role agent) may not dial 0044201234567: add _0044X."
                " to parameter acti_dial_agent")
            assert "no Asterisk link is configured" in await _error(
                client, "makecall", extension="101", destination="0112345678")
            assert "not allowed" in await _error(client, "transfer", extension="101",
                                                 callid="1.2", destination="0899123456")
            assert await _error(client, "queuestats") == (
                "not allowed: user alice (role agent) may not use queuestats: it needs role"
                " supervisor")
            await client.request("desktopsettings")  # session-level: allowed


async def test_resource_api_answers_403(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    await _admin(d, "add user alice agent 101", PASSWORD)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{d.rest_url}/api/v1/login",
                             json={"username": "alice", "password": PASSWORD}) as resp:
            token = (await resp.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(f"{d.rest_url}/api/v1/extensions/102/monitor",
                             headers=headers) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == \
                "not allowed: user alice may not act on extension 102"
        async with http.post(f"{d.rest_url}/api/v1/extensions/101/calls", headers=headers,
                             json={"destination": "+442012345678"}) as resp:
            assert resp.status == 403
        # the astCTI form keeps HTTP 200 and says it in `error`
        async with http.get(f"{d.rest_url}/makecall?extension=102&destination=101",
                            headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["error"].startswith("not allowed: user alice")


async def test_supervisor_watches_any_extension_and_controls_its_own(
        local_daemon: LocalDaemon) -> None:
    d = local_daemon
    await _admin(d, "add user sam supervisor 102", PASSWORD)
    async with await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], "sam", PASSWORD) as sam:
        assert "no Asterisk link is configured" in await _error(sam, "startmonitor",
                                                                extension="101")
        assert await _error(sam, "hangup", extension="101", callid="1.2") == \
            "not allowed: user sam may not act on extension 101"
        assert "no Asterisk link is configured" in await _error(sam, "hangup", extension="102",
                                                       callid="1.2")
        await sam.request("queuestats")


async def test_an_administrators_change_applies_at_the_next_request(
        local_daemon: LocalDaemon) -> None:
    d = local_daemon
    await _admin(d, "add user alice agent 101", PASSWORD)
    async with await CtiClient.websocket(f"ws://127.0.0.1:{d.ports['astctiws']}/", "alice",
                                         PASSWORD) as alice:
        assert "not allowed" in await _error(alice, "snapshot", extension="102")
        assert await _admin(d, "update user alice extensions 102") == \
            "extensions of alice: 102 (was 101)"
        assert "no Asterisk link is configured" in await _error(alice, "snapshot", extension="102")
        assert "not allowed" in await _error(alice, "snapshot", extension="101")
        await _admin(d, "update user alice role admin")
        assert "no Asterisk link is configured" in await _error(alice, "snapshot", extension="101")
        await _admin(d, "remove user alice")
        assert await _error(alice, "snapshot", extension="101") == \
            "not logged in: send a login request first"


async def test_logout_revokes_the_token_on_every_transport(local_daemon: LocalDaemon) -> None:
    d = local_daemon
    await _admin(d, "add user alice agent 101", PASSWORD)
    ws = await CtiClient.websocket(f"ws://127.0.0.1:{d.ports['astctiws']}/")
    token = (await ws.login("alice", PASSWORD))["token"]
    async with await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], token=token) as tcp:
        await tcp.request("desktopsettings")
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{d.rest_url}/api/v1/desktop", headers=headers) as resp:
                assert resp.status == 200
            await ws.request("logout")
            await ws.close()
            async with http.get(f"{d.rest_url}/api/v1/desktop", headers=headers) as resp:
                assert resp.status == 401
        with pytest.raises(CtiError, match="login failed"):
            await CtiClient.tcp("127.0.0.1", d.ports["astctiapi"], token=token)
