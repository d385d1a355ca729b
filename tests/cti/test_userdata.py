"""UserDataService: bounds, merges, dialplan data, hand-over, persistence and expiry."""

from __future__ import annotations

from pathlib import Path

import pytest

from astcti.cti.events import CallCleared, ConnectionCleared, Delivered
from astcti.cti.userdata import MAX_KEYS, UserDataError, UserDataService, check_userdata
from astcti.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "a.db", create=True)
    yield s
    s.close()


@pytest.mark.parametrize("bad, words", [
    ([1, 2], "must be a JSON object"),
    ({"a": {"b": 1}}, "no nested"),
    ({"a": [1]}, "no nested"),
    ({"a": True}, "string or a number"),
    ({"": "x"}, "keys are 1 to"),
    ({"k": "x" * 2000}, "longer than"),
    ({f"k{i}": i for i in range(MAX_KEYS + 1)}, f"at most {MAX_KEYS} keys"),
])
def test_bad_user_data_is_refused_with_words(bad: object, words: str) -> None:
    with pytest.raises(UserDataError, match=words):
        check_userdata(bad)


def test_merge_persists_and_survives_a_restart(store: Store) -> None:
    service = UserDataService(store)
    assert service.merge("c1", {"account": "4711"}) == {"account": "4711"}
    assert service.merge("c1", {"case": 9}) == {"account": "4711", "case": 9}
    again = UserDataService(store)  # a daemon restart while the call is up
    assert again.get("c1") == {"account": "4711", "case": 9}


def test_total_size_is_bounded_and_nothing_changes(store: Store) -> None:
    service = UserDataService(store)
    service.merge("c1", {f"k{i}": "x" * 1000 for i in range(3)})
    with pytest.raises(UserDataError, match="would exceed"):
        service.merge("c1", {"more": "y" * 1000, "more2": "z" * 1000})
    assert set(service.get("c1")) == {"k0", "k1", "k2"}


def test_events_carry_client_and_dialplan_data(store: Store) -> None:
    service = UserDataService(store)
    service.merge("c1", {"crm": "case-9", "ivr": "client wins"})
    delivered = Delivered("101", "c1", "t", userdata={"ivr": "billing", "account": "4711"})
    (out,) = service.decorate([delivered])
    assert out.userdata == {"ivr": "client wins", "account": "4711", "crm": "case-9"}
    # dialplan data joined the call: a later event without it still carries it
    cleared = ConnectionCleared("102", "c1", "t")
    (out,) = service.decorate([cleared])
    assert out.userdata["account"] == "4711"


def test_hand_over_to_another_call_keeps_target_keys(store: Store) -> None:
    service = UserDataService(store)
    service.merge("orig", {"account": "4711", "note": "from 101"})
    service.merge("consult", {"note": "consultation"})
    assert service.hand_over("orig", "consult") == {"account": "4711", "note": "consultation"}
    (out,) = service.decorate([Delivered("102", "consult", "t")])
    assert out.userdata["account"] == "4711"


def test_data_expires_after_the_grace_period(store: Store) -> None:
    clock = Clock()
    store.set_parameter("acti_userdata_grace", "60")
    service = UserDataService(store, clock=clock)
    service.merge("c1", {"a": "1"})
    service.decorate([CallCleared("101", "c1", "t")])
    assert service.get("c1") == {"a": "1"}  # late readers still get it
    clock.now += 61
    service.expire()
    assert service.get("c1") == {}
    assert "c1" not in store.userdata_rows()


def test_calls_gone_during_a_restart_expire_after_resync(store: Store) -> None:
    clock = Clock()
    UserDataService(store, clock=clock).merge("gone", {"a": "1"})
    store.set_parameter("acti_userdata_grace", "5")
    service = UserDataService(store, clock=clock)
    service.live(["other"])
    clock.now += 6
    service.expire()
    assert service.get("gone") == {}
