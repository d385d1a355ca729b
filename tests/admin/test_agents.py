"""The agents' console words offline: ipextnmap (free seating) and agent passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from astcti.admin.commands import CommandError, Context, execute, tokenize
from astcti.cti.seating import Seating
from astcti.store import Store


@pytest.fixture
def store(tmp_path: Path):
    s = Store.open(tmp_path / "a.db", create=True)
    s.add_extension("2611", "PJSIP")
    s.add_extension("2612", "PJSIP")
    yield s
    s.close()


async def run(store: Store, line: str, **kw) -> str:
    return await execute(tokenize(line), Context(store, None, **kw))


async def test_the_authors_ipextnmap_words(store: Store) -> None:
    assert "no address is mapped" in await run(store, "show ipextnmap")
    assert "sits at extension 2611" in await run(store, "add ipextnmap 192.168.1.101 2611")
    moved = await run(store, "add ipextnmap 192.168.1.101 2612")
    assert "sits at extension 2612 (was 2611)" in moved
    assert "already sits" in await run(store, "add ipextnmap 192.168.1.101 2612")
    await run(store, "add ipextnmap ::ffff:10.0.0.7 2611")  # an IPv4 client seen over IPv6
    table = await run(store, "show ipextnmap")
    assert "192.168.1.101  2612" in table and "10.0.0.7       2611" in table
    assert Seating(store).extension_of("::ffff:192.168.1.101") == "2612"
    assert "removed" in await run(store, "remove ipextnmap 10.0.0.7")
    assert store.ipextnmap() == {"192.168.1.101": "2612"}


@pytest.mark.parametrize("line, words", [
    ("add ipextnmap 192.168.1 2611", "invalid address '192.168.1'"),
    ("add ipextnmap 10.0.0.0/8 2611", "use one IP address"),
    ("add ipextnmap 192.168.1.101 9999", "extension 9999 is not configured: add it first"),
    ("add ipextnmap 192.168.1.101", "usage: add ipextnmap ADDRESS EXT"),
    ("remove ipextnmap 192.168.1.50", "address 192.168.1.50 is not mapped"),
    ("passwd agent bad/id", "invalid agent id"),
    ("remove agent password 7001", "agent 7001 has no password"),
])
async def test_bad_input_changes_nothing(store: Store, line: str, words: str) -> None:
    before = (store.ipextnmap(), store.agents_with_password())
    with pytest.raises(CommandError, match=words.replace("(", r"\(")):
        await run(store, line)
    assert (store.ipextnmap(), store.agents_with_password()) == before


async def test_agent_passwords(store: Store) -> None:
    assert "no agent has a password" in await run(store, "show agent passwords")
    with pytest.raises(CommandError, match="password too short"):
        await run(store, "passwd agent 7001", secret="12")
    assert "set" in await run(store, "passwd agent 7001", secret="4321")
    assert "changed" in await run(store, "passwd agent 7001", secret="87654321")
    assert "7001" in await run(store, "show agent passwords")
    assert "removed" in await run(store, "remove agent password 7001")
    assert store.agent_password_hash("7001") is None
