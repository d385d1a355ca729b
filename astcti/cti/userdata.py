"""User data attached to a call: merged by clients and the dialplan, delivered with its events.

A call's data (callid = Asterisk linkedid) lives here while the call lives, plus a grace period
for late readers, and is saved on every change (by the background writer, astcti/store/writer.py,
never on the event path) so a daemon restart during the call loses nothing. Data the dialplan set (`ASTCTI_USERDATA`, see the tracker) is folded in
when the tracker reports it, so IVR-collected data follows the call like client data does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from astcti.cti.events import (
    CallCleared, ConnectionCleared, CtiEvent, Delivered, Established, Originated, Transferred,
)
from astcti.store import Store
from astcti.store.writer import ImmediateWriter, StoreWriter

log = logging.getLogger(__name__)

MAX_KEYS = 32
MAX_KEY_CHARS = 64
MAX_VALUE_CHARS = 1024
MAX_TOTAL_BYTES = 4096

#: Events that carry the call's user data to clients.
CARRIERS = (Originated, Delivered, Established, ConnectionCleared, Transferred)


class UserDataError(ValueError):
    """User data a client sent that astcti refuses; the message is the client's error line."""


def check_userdata(data: Any) -> dict[str, str | int | float]:
    """A flat object of string keys and string/number values, within the size bounds."""
    if not isinstance(data, dict):
        raise UserDataError("bad field data: user data must be a JSON object")
    if len(data) > MAX_KEYS:
        raise UserDataError(f"bad field data: at most {MAX_KEYS} keys")
    clean: dict[str, str | int | float] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise UserDataError(f"bad field data: keys are 1 to {MAX_KEY_CHARS} characters")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise UserDataError(f"bad field data: value of {key[:40]!r} must be a string or a"
                                " number (no nested objects or lists)")
        if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
            raise UserDataError(f"bad field data: value of {key[:40]!r} is longer than"
                                f" {MAX_VALUE_CHARS} characters")
        clean[key] = value
    return clean


class UserDataService:
    """Per-call user data: client merges, dialplan data, persistence, hand-over, expiry."""

    def __init__(self, store: Store, grace: float = 60.0,
                 clock: Callable[[], float] = time.time,
                 writer: StoreWriter | ImmediateWriter | None = None) -> None:
        self.store = store
        self.writer = writer or ImmediateWriter(store)
        self.grace = grace
        self.clock = clock
        self.calls: dict[str, dict[str, Any]] = {}
        self.expires: dict[str, float] = {}  # ended calls: callid -> forget after
        self._load()

    def _load(self) -> None:
        now = self.clock()
        stale = []
        for callid, (text, expires) in self.store.userdata_rows().items():
            if expires is not None and expires <= now:
                stale.append(callid)
                continue
            try:
                data = json.loads(text)
            except ValueError:
                stale.append(callid)
                continue
            self.calls[callid] = data if isinstance(data, dict) else {}
            if expires is not None:
                self.expires[callid] = expires
        self._forget_saved(stale)
        if self.calls:
            log.info("recovered user data of %d call(s)", len(self.calls))

    # -- the protocol side ----------------------------------------------------------------------
    def get(self, callid: str) -> dict[str, Any]:
        return dict(self.calls.get(callid, {}))

    def merge(self, callid: str, data: dict[str, Any]) -> dict[str, Any]:
        """Merge checked data into the call's; UserDataError if the result is too large."""
        clean = check_userdata(data)
        merged = {**self.calls.get(callid, {}), **clean}
        if len(merged) > MAX_KEYS:
            raise UserDataError(f"bad field data: the call would hold more than {MAX_KEYS} keys")
        if len(json.dumps(merged)) > MAX_TOTAL_BYTES:
            raise UserDataError(f"bad field data: the call's user data would exceed"
                                f" {MAX_TOTAL_BYTES} bytes")
        self._save(callid, merged)
        return dict(merged)

    def hand_over(self, from_callid: str, to_callid: str) -> dict[str, Any]:
        """The data of `from_callid` joins `to_callid` (transfer, consultation, conference).

        Call it when a call control operation moves a party into another Asterisk call (e.g.
        an attended transfer joins the consultation call, whose linkedid differs): the target
        call's own keys win, so data attached to the consultation is not overwritten.
        """
        source = self.calls.get(from_callid)
        if not source or from_callid == to_callid:
            return self.get(to_callid)
        merged = {**source, **self.calls.get(to_callid, {})}
        self._save(to_callid, merged)
        return dict(merged)

    def _save(self, callid: str, data: dict[str, Any]) -> None:
        text, expires = json.dumps(data), self.expires.get(callid)
        self.writer.put(f"userdata:{callid}",
                        lambda store: store.save_userdata(callid, text, expires))
        self.calls[callid] = data

    def _forget_saved(self, callids: list[str]) -> None:
        for callid in callids:
            self.writer.put(f"userdata:{callid}",
                            lambda store, c=callid: store.remove_userdata([c]))

    # -- the event side ---------------------------------------------------------------------------
    def decorate(self, events: Iterable[CtiEvent]) -> list[CtiEvent]:
        """Put the call's user data on the events that carry it; expire ended calls."""
        out = list(events)
        for event in out:
            if isinstance(event, CARRIERS) and event.callid:
                stored = self.calls.get(event.callid, {})
                from_dialplan = {k: v for k, v in event.userdata.items() if k not in stored}
                if from_dialplan:  # data the dialplan set joins the call; clients' keys win
                    stored = {**stored, **from_dialplan}
                    self._save(event.callid, stored)
                if stored:
                    event.userdata = {**event.userdata, **stored}
            elif isinstance(event, CallCleared) and event.callid in self.calls:
                self._ended(event.callid)
        self.expire()
        return out

    def _grace(self) -> float:
        """`acti_userdata_grace`, read when used so `update parameter` applies at once."""
        try:
            return float(self.store.get_parameter("acti_userdata_grace") or self.grace)
        except ValueError:
            return self.grace

    def _ended(self, callid: str) -> None:
        if callid not in self.expires:
            self.expires[callid] = self.clock() + self._grace()
            self._save(callid, self.calls[callid])

    def live(self, callids: Iterable[str]) -> None:
        """After a resync: calls Asterisk no longer has start their grace period."""
        alive = set(callids)
        for callid in list(self.calls):
            if callid not in alive and callid not in self.expires:
                self._ended(callid)
        self.expire()

    def expire(self) -> None:
        now = self.clock()
        gone = [c for c, t in self.expires.items() if t <= now]
        for callid in gone:
            del self.expires[callid]
            self.calls.pop(callid, None)
        self._forget_saved(gone)
