import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from astcti.errors import StoreError
from astcti.store import Store
from astcti.store.schema import DEFAULT_PARAMETERS, SCHEMA_VERSION
from astcti.store.store import ExtensionRow, ListenerRow


def test_create_seeds_defaults_and_schema_version(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db", create=True)
    assert store.schema_version == SCHEMA_VERSION
    assert store.get_parameter("acti_defaultexttype") == "PJSIP"
    assert set(DEFAULT_PARAMETERS) <= set(store.parameters())
    assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"does not exist: create it with `astcti init"):
        Store.open(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_corrupt_store_is_a_clear_error_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    junk = b"this is not sqlite" * 100
    path.write_bytes(junk)
    with pytest.raises(StoreError, match="corrupt or not an astcti store"):
        Store.open(path)
    assert path.read_bytes() == junk


def test_newer_schema_is_refused_without_damage(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    Store.open(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    conn.execute("INSERT INTO extensions(number, technology) VALUES ('999', 'PJSIP')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="upgrade astcti"):
        Store.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT number FROM extensions").fetchall() == [("999",)]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5


def test_migration_from_empty_file_and_reopen_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    sqlite3.connect(path).close()  # an empty SQLite file: version 0
    store = Store.open(path)
    store.set_parameter("acti_defaultexttype", "SIP")
    store.close()
    store = Store.open(path)
    assert store.schema_version == SCHEMA_VERSION
    assert store.get_parameter("acti_defaultexttype") == "SIP"  # not reset by a second migrate
    store.close()


def test_v2_store_gains_the_answer_mode_and_keeps_its_extensions(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    _store_at_version(path, 2, extensions={"number": "101", "technology": "PJSIP"})
    store = Store.open(path)
    assert store.schema_version == SCHEMA_VERSION
    assert [(e.number, e.answer) for e in store.extensions()] == [("101", "")]
    assert store.get_parameter("acti_answer") == "reoffer"
    assert store.set_extension_answer("101", "talk")
    assert not store.set_extension_answer("999", "talk")
    assert store.extensions()[0].answer == "talk"
    store.close()


def test_typed_accessors_round_trip(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db", create=True)
    store.add_extension("101", "PJSIP")
    store.add_extension("102", "PJSIP")
    store.add_extension("101", "SIP")  # update, not duplicate
    assert [(e.number, e.technology) for e in store.extensions()] == [("101", "SIP"), ("102", "PJSIP")]
    assert store.remove_extension("102") and not store.remove_extension("102")
    store.add_listener(ListenerRow(9001, "127.0.0.1", "*", "astctirest", "none"))
    assert store.listeners() == [ListenerRow(9001, "127.0.0.1", "*", "astctirest", "none", False)]
    store.set_parameter("acti_tlink_01", "1.2.3.4#8088#a,b,c")
    store.set_parameter("acti_tlink_x", "ignored")
    assert list(store.link_parameters()) == ["acti_tlink_01"]
    store.set_user("alice", "s3cret!")
    assert store.check_user("alice", "s3cret!") is not None
    assert store.check_user("alice", "wrong") is None
    assert store.check_user("bob", "s3cret!") is None
    hashed = store.db.conn.execute("SELECT password_hash FROM users").fetchone()[0]
    assert "s3cret" not in hashed and hashed.startswith("scrypt$")
    store.close()


def _writer(path: str, worker: int, count: int) -> None:
    store = Store.open(path)
    for i in range(count):
        store.set_parameter(f"p_{worker}_{i}", str(i))
        store.add_extension(f"{worker}{i:04d}", "PJSIP")
    store.close()


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Store.open(path, create=True).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store.open(path)
    params = store.parameters()
    assert all(params[f"p_{w}_{i}"] == str(i) for w in range(4) for i in range(150))
    assert len(store.extensions()) == 600
    assert store.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_write_failure_is_one_line_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    store = Store.open(path, create=True)
    store.set_parameter("keep", "me")
    # a read-only connection stands for a read-only or full disk: the write must fail cleanly
    store.db.conn.execute("PRAGMA query_only=ON")
    with pytest.raises(StoreError) as info:
        store.set_parameter("new", "value")
    message = str(info.value)
    assert "cannot set parameter new" in message and "nothing changed" in message
    assert "\n" not in message
    store.db.conn.execute("PRAGMA query_only=OFF")
    assert store.get_parameter("keep") == "me" and store.get_parameter("new") is None
    store.close()


def test_v2_keeps_agents_and_call_user_data(tmp_path: Path) -> None:
    from astcti.store.store import AgentRow

    store = Store.open(tmp_path / "a.db", create=True)
    store.save_agent(AgentRow("101", "7001", ("support", "sales"), "notready", "lunch", "t", None))
    store.save_userdata("c1", '{"a": "1"}')
    store.close()
    store = Store.open(tmp_path / "a.db")
    assert store.agents() == [AgentRow("101", "7001", ("support", "sales"), "notready", "lunch",
                                       "t", None)]
    assert store.userdata_rows() == {"c1": ('{"a": "1"}', None)}
    assert store.get_parameter("acti_userdata_grace") == "60"
    assert store.remove_agent("101") and store.agents() == []
    store.close()


def test_v2_store_migrates_to_the_latest_keeping_its_agents(tmp_path: Path) -> None:
    """A store written by the previous release: its logged-in agents survive the upgrade."""
    path = tmp_path / "v2.db"
    _store_at_version(path, 2, agents={"extension": "101", "agentid": "7001",
                                       "groups": "support", "state": "ready", "reason": "",
                                       "since": "", "acw_until": None})
    store = Store.open(path)
    assert store.schema_version == SCHEMA_VERSION
    (agent,) = store.agents()
    assert (agent.agentid, agent.state, agent.mode) == ("7001", "ready", "")
    assert store.ipextnmap() == {} and store.agents_with_password() == []
    store.close()


def test_ipextnmap_and_agent_passwords(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.db", create=True)
    store.map_address("192.168.1.101", "2611")
    store.map_address("192.168.1.101", "2612")  # same address: moved
    store.map_address("10.0.0.7", "2611")  # several addresses may share one extension
    assert store.ipextnmap() == {"10.0.0.7": "2611", "192.168.1.101": "2612"}
    assert store.unmap_address("10.0.0.7") and not store.unmap_address("10.0.0.7")
    store.set_agent_password("7001", "4321")
    stored = store.agent_password_hash("7001")
    assert stored and "4321" not in stored and store.agents_with_password() == ["7001"]
    assert store.remove_agent_password("7001") and store.agent_password_hash("7001") is None
    store.close()


def test_feature_parameters_reach_stores_of_any_version(tmp_path: Path) -> None:
    """Parameters of later features appear with their defaults when an older store opens, and
    an operator's value is never overwritten."""
    from astcti.store.schema import FEATURE_PARAMETERS

    store = Store.open(tmp_path / "p.db", create=True)
    store.set_parameter("acti_servicelevel", "30")
    store.db.conn.execute("DELETE FROM parameters WHERE name = 'acti_screenpop_mode'")
    store.close()
    store = Store.open(tmp_path / "p.db")
    try:
        assert set(FEATURE_PARAMETERS) <= set(store.parameters())
        assert store.get_parameter("acti_screenpop_mode") == "tab"
        assert store.get_parameter("acti_servicelevel") == "30"
    finally:
        store.close()


def _store_at_version(path: Path, version: int, **rows: dict[str, Any]) -> None:
    """A store as an older astcti left it (only the first `version` migrations), with one
    row per named table (`extensions={...}`) written as that version would have."""
    import sqlite_utils

    from astcti.store.schema import MIGRATIONS

    db = sqlite_utils.Database(sqlite3.connect(path))
    for migrate in MIGRATIONS[:version]:
        migrate(db)
    db.conn.execute(f"PRAGMA user_version={version}")
    for table, row in rows.items():
        db[table].insert(row)
    db.conn.commit()
    db.conn.close()


def test_v6_users_from_before_roles_become_admin_and_say_so(tmp_path: Path) -> None:
    """Users could do everything before roles: they stay able to (admin), marked migrated, so
    nothing breaks silently; the administrator's first change clears the mark. An auth=none
    listener open to everyone keeps opening (forced) instead of vanishing at the upgrade."""
    from astcti.store.store import hash_password

    path = tmp_path / "old.db"
    _store_at_version(path, 2)
    conn = sqlite3.connect(path)
    conn.executemany("INSERT INTO users(username, password_hash, role, created) VALUES (?,?,?,?)",
                     [("crm", hash_password("pw-crm-123"), "client", "2026-01-01"),
                      ("root", hash_password("pw-root-123"), "admin", "2026-01-01")])
    conn.executemany("INSERT INTO listeners(port, bind, allow, protocol, auth) VALUES (?,?,?,?,?)",
                     [(9001, "127.0.0.1", "*", "astctirest", "none"),
                      (9002, "127.0.0.1", "10.0.0.5", "astctirest", "none"),
                      (9003, "127.0.0.1", "*", "astctiws", "token")])
    conn.commit()
    conn.close()
    store = Store.open(path)
    users = {u.username: u for u in store.users()}
    assert (users["crm"].role, users["crm"].migrated, users["crm"].extensions) == \
        ("admin", True, ())
    assert (users["root"].role, users["root"].migrated) == ("admin", False)
    assert store.check_user("crm", "pw-crm-123").role == "admin"  # still logs in
    assert [(r.port, r.forced) for r in store.listeners()] == \
        [(9001, True), (9002, False), (9003, False)]
    assert store.get_parameter("acti_dial_agent") == "internal,_0[1-7]X."
    assert store.update_user("crm", role="agent", extensions=["101", "102"])
    crm = store.user("crm")
    assert (crm.role, crm.extensions, crm.migrated) == ("agent", ("101", "102"), False)
    store.set_user("crm", "new-password-1", crm.role)  # a password change keeps extensions
    assert store.user("crm").extensions == ("101", "102")
    with pytest.raises(ValueError, match="unknown role 'root'"):
        store.set_user("x", "password-123", "root")


def test_v3_store_migrates_to_v4_extensions_unpinned_then_pinned(tmp_path: Path) -> None:
    """v4: an extension may be pinned to one Asterisk link (the same number on two PBXs)."""
    path = tmp_path / "v3.db"
    _store_at_version(path, 3, extensions={"number": "150", "technology": "PJSIP"})
    store = Store.open(path)
    assert store.extensions() == [ExtensionRow("150", "PJSIP", "")]
    assert store.pin_extension("150", "acti_tlink_02") and not store.pin_extension("9", "x")
    assert store.extensions() == [ExtensionRow("150", "PJSIP", "acti_tlink_02")]
    store.add_extension("150", "PJSIP")  # re-adding keeps the pin
    assert store.extensions()[0].link == "acti_tlink_02"
    store.close()
