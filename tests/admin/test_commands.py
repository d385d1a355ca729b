"""The command language on a real store, offline (no daemon): parsing, validation, no change
on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

import astcti.admin.commands  # noqa: F401  (registers every command)
from astcti.admin import language
from astcti.admin.language import CommandError, Context, execute, parse, tokenize
from astcti.secrets import encrypt, load_key
from astcti.store import Store
from tests.admin.conftest import store_state


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "a.db", create=True)
    yield s
    s.close()


async def run(store: Store, line: str, **kw) -> str:
    return await execute(tokenize(line), Context(store, None, **kw))


@pytest.mark.parametrize("line, words", [
    ("shwo links", "did you mean `show links`?"),
    ("updte parameter acti_heartbeat 3", "did you mean `update parameter`?"),
    ("ad extension 105", "did you mean `add extension`?"),
    ("frobnicate", "type `help` for the list"),
])
def test_unknown_command_suggests_the_nearest(line: str, words: str) -> None:
    with pytest.raises(CommandError, match="unknown command") as err:
        parse(tokenize(line))
    assert str(err.value).endswith(words)


@pytest.mark.parametrize("line, words", [
    ("add extension", "usage: add extension NUM [TECH]"),
    ("add extension 1 2 3", "usage: add extension NUM [TECH]"),
    ("add tcp 9001 * *", "usage: add tcp PORT BIND ALLOW custom PROTOCOL [AUTH] [--force]"),
    ("show links now", "usage: show links"),
    ("add tcp 0 * * custom astctiws", "invalid port '0'"),
    ("add tcp 9001 * 10.0.0.0/33 custom astctiws", "'10.0.0.0/33' is not an address or CIDR"),
    ("add tcp 9001 nowhere * custom astctiws", "invalid bind address 'nowhere'"),
    ("add tcp 9001 * * special astctiws", "expected the word 'custom'"),
    ("add tcp 9001 * * custom telnet", "invalid protocol 'telnet'"),
    ("add tcp 9001 * * custom astctiws auth=maybe", "use auth=token"),
    ("add extension 105 H323", "unknown technology 'H323'"),
    ("add extension 1;05", "invalid extension"),
    ("add user bad/name", "invalid user name"),
    ("add user bob root", "invalid role 'root'"),
    ("trace on sip", "invalid trace channel 'sip'"),
    ("show tcp --force", "takes no --force"),
    ("update parameter 'unclosed", "close the quote"),
])
def test_bad_input_is_one_line(line: str, words: str) -> None:
    with pytest.raises(CommandError) as err:
        parse(tokenize(line))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_words_are_case_insensitive_and_technology_normalised() -> None:
    parsed = parse(tokenize("ADD Extension 105 pjsip"))
    assert parsed.command.phrase == "add extension" and parsed.args == {"NUM": "105",
                                                                        "TECH": "PJSIP"}
    parsed = parse(tokenize("remove extension 105 --force"))
    assert parsed.force and parsed.args == {"NUM": "105"}


@pytest.mark.parametrize("line, words", [
    ("update parameter acti_defaultexttype FOO", "unknown technology 'FOO'"),
    ("update parameter acti_heartbeat fast", "expected a number"),
    ("update parameter acti_heartbeat 0", "out of range"),
    ("update parameter acti_loginstate busy", "use one of ready, notready"),
    ("update parameter acti_autoacw 2", "use one of 0, 1"),
    ("update parameter acti_agentgroups 'a b'", "queue name 'a b' is not valid"),
    ("update parameter acti_screenpop_url javascript:alert(1)", "is not an http(s) URL"),
    ("update parameter acti_screenpop_mode popup", "use one of tab, iframe"),
    ("update parameter acti_servicelevel 0", "out of range"),
    ("update parameter acti_tlink_01 127.0.0.1:8088", "needs two '#' separators"),
    ("update parameter acti_tlink_01 127.0.0.1#99999#astcti,u,x", "port '99999'"),
    ("update parameter acti_tlink_01 127.0.0.1#8088#astcti,u,not-a-token",
     "does not decrypt with this key"),
    ("update parameter acti_amilink_01 127.0.0.1#5038#astcti,u,x",
     "needs exactly one '#' between host and port"),
    ("update parameter acti_amilink_01 127.0.0.1#5038,astcti", "port,username,encryptedsecret"),
    ("update parameter acti_amilink_01 127.0.0.1#5038,astcti,not-a-token",
     "does not decrypt with this key"),
    ("update parameter acti_amilink_1 127.0.0.1#5038,astcti,x", "unknown parameter"),
    ("update parameter acti_nonsense 1", "unknown parameter acti_nonsense"),
    ("update parameter acti_heartbeet 3", "did you mean acti_heartbeat?"),
    ("remove extension 999", "extension 999 is not configured"),
    ("remove tcp 9999", "no listener on port 9999"),
    ("add tcp 9001 * * custom astctirest auth=none", "auth=none needs an allow list"),
    ("remove user ghost", "no user ghost"),
    ("show parameter acti_nope", "unknown parameter acti_nope"),
    ("show links", "needs the running daemon"),
    ("trace on asc", "needs the running daemon"),
    ("help nothing", "no help for `nothing`"),
])
async def test_failing_validation_changes_nothing(store: Store, tmp_path: Path, line: str,
                                                  words: str) -> None:
    cipher = load_key(tmp_path / "k", create=True)
    before = store_state(store.path)
    with pytest.raises(CommandError) as err:
        await run(store, line, cipher=cipher)
    assert words in str(err.value)
    assert store_state(store.path) == before


async def test_offline_changes_are_stored(store: Store, tmp_path: Path) -> None:
    cipher = load_key(tmp_path / "k", create=True)
    assert "added: PJSIP/105" in await run(store, "add extension 105")
    assert "IAX2/106" in await run(store, "add extension 106 iax2")
    assert [(e.number, e.technology) for e in store.extensions()] == [("105", "PJSIP"),
                                                                      ("106", "IAX2")]
    assert "removed" in await run(store, "remove extension 106")
    assert "NOTIFY Event: talk" in await run(store, "set extension 105 answer talk")
    assert store.extensions()[0].answer == "talk"
    assert "talk" in await run(store, "show extensions")
    assert "acti_answer says (reoffer)" in await run(store, "set extension 105 answer default")
    assert store.extensions()[0].answer == ""
    with pytest.raises(CommandError, match="invalid answer mode 'maybe'"):
        await run(store, "set extension 105 answer maybe")
    with pytest.raises(CommandError, match="extension 107 is not configured"):
        await run(store, "set extension 107 answer none")
    text = await run(store, "add tcp 9011 * 10.0.0.5 custom astctirest auth=none")
    assert "opens when astcti starts" in text and "warning:" in text and "auth=none" in text
    assert store.listeners()[0].bind == "*" and store.listeners()[0].auth == "none"
    text = await run(store, "add tcp 9012 127.0.0.1 * custom astctirest auth=none --force")
    assert "(forced)" in text and store.listeners()[1].forced
    token = encrypt(cipher, "s3cret")
    out = await run(store, f"update parameter acti_tlink_02 127.0.0.1#8088#astcti,astcti,{token}",
                    cipher=cipher)
    assert token not in out and "***" in out
    assert store.get_parameter("acti_tlink_02").endswith(token)
    out = await run(store, f"update parameter acti_amilink_02 127.0.0.1#5038,astcti,{token}",
                    cipher=cipher)
    assert token not in out and "127.0.0.1#5038,astcti,***" in out
    assert token not in await run(store, "show parameter acti_amilink_02")
    assert "AMI" in store.parameter_descriptions()["acti_amilink_02"]
    assert "acti_heartbeat = 2.5" in await run(store, "update parameter acti_heartbeat 2.5")
    assert "unchanged" in await run(store, "update parameter acti_heartbeat 2.5")
    assert await run(store, "update parameter acti_agentgroups 'sales, support'")
    assert store.get_parameter("acti_agentgroups") == "sales,support"
    assert await run(store, "update parameter acti_agentgroups_7001 support")
    assert store.get_parameter("acti_agentgroups_7001") == "support"
    assert "added (role admin)" in await run(store, "add user eve admin", secret="long enough")
    assert store.check_user("eve", "long enough") is not None
    with pytest.raises(CommandError, match="too short"):
        await run(store, "passwd user eve", secret="short")
    assert store.check_user("eve", "long enough") is not None
    with pytest.raises(CommandError, match="user eve exists"):
        await run(store, "add user eve", secret="another one")
    encrypted = await run(store, "encrypt password", secret="ari-pass", cipher=cipher)
    from astcti.secrets import decrypt
    assert decrypt(cipher, encrypted, what="t") == "ari-pass"


async def test_secret_commands_refuse_to_run_without_a_secret(store: Store) -> None:
    with pytest.raises(CommandError, match="prompts for it"):
        await run(store, "add user zed")
    assert store.users() == []


def test_every_command_has_doc_example_and_parses_its_example() -> None:
    for cmd in language.COMMANDS.values():
        assert cmd.doc and cmd.example
        assert parse(tokenize(cmd.example)).command is cmd


async def test_users_have_a_role_and_extensions(store: Store) -> None:
    store.add_extension("101", "PJSIP")
    assert await run(store, "add user alice agent 101,102,101", secret="long enough") == (
        "user alice added (role agent, extensions 101,102)\n"
        "warning: extension 102 is not configured yet: add it with `add extension 102`")
    out = await run(store, "add user bob", secret="long enough")
    assert out.startswith("user bob added (role agent)\nwarning: agent bob has no extension")
    assert await run(store, "update user bob extensions 101") == \
        "extensions of bob: 101 (was none)"
    assert await run(store, "update user bob role supervisor") == \
        "role of bob: supervisor (was agent)"
    assert await run(store, "update user bob extensions none") == \
        "extensions of bob: none (was 101)"
    before = store_state(store.path)
    for line, words in [("update user carol role admin", "no user carol"),
                        ("update user bob role root", "invalid role 'root'"),
                        ("update user bob colour blue", "invalid user setting 'colour'"),
                        ("update user bob extensions 1;2", "invalid extension '1;2'"),
                        ("update user bob extensions ,", "no extension given"),
                        ("add user carol agent 1;2", "invalid extension")]:
        with pytest.raises(CommandError, match=words):
            await run(store, line, secret="long enough")
    assert store_state(store.path) == before
    store.db.conn.execute("UPDATE users SET migrated = 1, role = 'admin' WHERE username = 'bob'")
    lines = (await run(store, "show users")).splitlines()
    assert lines[0].split() == ["user", "role", "extensions", "created", "note"]
    assert lines[1].split()[:3] == ["alice", "agent", "101,102"]
    assert lines[2].split()[:3] == ["bob", "admin", "-"] and "from before roles" in lines[2]
    await run(store, "update user bob role agent")
    assert "from before roles" not in await run(store, "show users")
