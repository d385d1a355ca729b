"""Call control's picture of its calls in Asterisk: legs, conversations, locks. No I/O.

A `Leg` is a channel astcti handles (in its Stasis app, or about to enter it). A `Conversation`
is one mixing bridge and who talks in it; `holder` is the agent's channel taken out of it to
hold it (the others hear music on hold). An agent has ONE leg (its phone's SIP dialog): the
same channel may be a member of one conversation and hold others (a consultation: talking to
the consulted party, holding the customer), so requests move that channel between bridges and
never call the phone a second time.

The clean-up rule (`Conversation.verdict`): a conversation reduced to a single party, with
nobody holding it and nobody being dialled into it, is over. Its last party is hung up unless it
still has another call (an agent consulting or holding elsewhere): then it only leaves.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from astcti.errors import AstctiError


class ControlError(AstctiError):
    """A control request that cannot be carried out: `words` for the client, HTTP `status`."""

    def __init__(self, words: str, status: int) -> None:
        super().__init__(words)
        self.words = words
        self.status = status


NOT_CONTROLLABLE = ("call not controllable: it did not pass through astcti's Stasis"
                    " application (see docs/call-control.md)")


@dataclass
class FarCall:
    """What to dial once the agent's phone answers a makecall (destination, caller, data)."""

    destination: str
    extension: str
    userdata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Leg:
    """A channel astcti handles."""

    link: str
    id: str
    name: str
    number: str = ""  # caller id number (who this party is, for events)
    peer: str | None = None  # the leg this one was dialled for (bridged with it on answer)
    up: bool = False
    gone: bool = False
    replaced: bool = False  # `answer` re-offered the call on another leg
    answering: bool = False  # an `answer` is taking this ringing leg off-hook
    then: FarCall | None = None  # makecall: dial this when the agent's phone answers
    extension: str | None = None  # the agent's extension (its makecall leg, a re-offer)
    offers: int = 0  # `answer` offered the call again on this leg: how many times so far
    first_offer: float = 0.0  # when `answer` first offered it again (loop time)
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # Asterisk: gone

    def mark_up(self) -> bool:
        """The channel is answered; False if it already was."""
        if self.up:
            return False
        self.up = True
        self.answered.set()
        return True


class Verdict(str, Enum):
    KEEP = "keep"
    RECALL = "recall"  # a single-step transfer was not taken: ring the agent again
    OVER = "over"


@dataclass
class Conversation:
    """One mixing bridge and who talks in it."""

    link: str
    bridge_id: str
    members: set[str] = field(default_factory=set)
    holder: str | None = None  # agent channel out of the bridge while the call is held
    incoming: set[str] = field(default_factory=set)  # legs being dialled into it
    moh: bool = False
    closing: bool = False
    recall: str | None = None  # single-step transfer: the agent to ring again if it fails

    def parties(self) -> set[str]:
        """Every leg that belongs to this conversation (members, holder, legs being dialled)."""
        return self.members | self.incoming | ({self.holder} if self.holder else set())

    def verdict(self, alive: list[str], holder_alive: bool) -> Verdict:
        """Apply the clean-up rule to the members still alive."""
        if self.incoming and (alive or holder_alive):
            return Verdict.KEEP
        if len(alive) >= 2 or (holder_alive and alive):
            return Verdict.KEEP
        if self.recall is not None and len(alive) == 1 and not holder_alive:
            return Verdict.RECALL
        return Verdict.OVER


class CallState:
    """Legs and conversations per link (the registry every part of call control shares).

    Who holds a conversation, which legs are being dialled into one and which legs were dialled
    for a leg are indexed by channel, so the lookups every request and reaction makes cost the
    same with 5 calls or 500. Change them through `set_holder`, `expect`, `unexpect`,
    `clear_incoming` and `set_peer`; register and drop conversations with `add_conv` /
    `drop_conv`, legs with `add_leg` / `forget_leg`: the index follows."""

    def __init__(self) -> None:
        self.legs: dict[tuple[str, str], Leg] = {}
        self.convs: dict[tuple[str, str], Conversation] = {}  # (link, bridge id)
        self.member_of: dict[tuple[str, str], Conversation] = {}  # (link, channel) -> its bridge
        self._holding: dict[tuple[str, str], list[Conversation]] = {}  # (link, holder)
        self._dialled_into: dict[tuple[str, str], list[Conversation]] = {}  # (link, incoming)
        self._dialled_for: dict[tuple[str, str], set[str]] = {}  # (link, peer) -> leg ids

    def leg(self, link: str, channel_id: str) -> Leg | None:
        return self.legs.get((link, channel_id))

    def add_leg(self, leg: Leg) -> Leg:
        self.legs[(leg.link, leg.id)] = leg
        if leg.peer is not None:
            self._dialled_for.setdefault((leg.link, leg.peer), set()).add(leg.id)
        return leg

    def set_peer(self, leg: Leg, peer: str) -> None:
        """The leg was dialled for `peer` (bridged with it on answer)."""
        self._unpeer(leg)
        leg.peer = peer
        self._dialled_for.setdefault((leg.link, peer), set()).add(leg.id)

    def forget_leg(self, link: str, channel_id: str) -> None:
        leg = self.legs.pop((link, channel_id), None)
        if leg is not None:
            self._unpeer(leg)
        self._dialled_for.pop((link, channel_id), None)  # legs dialled for it: their own now

    def _unpeer(self, leg: Leg) -> None:
        if leg.peer is not None:
            ids = self._dialled_for.get((leg.link, leg.peer))
            if ids is not None:
                ids.discard(leg.id)
                if not ids:
                    del self._dialled_for[(leg.link, leg.peer)]

    def dialled_for(self, link: str, peer: str) -> list[Leg]:
        """The legs dialled for `peer` that astcti still handles."""
        out = []
        for channel_id in sorted(self._dialled_for.get((link, peer), ())):
            leg = self.legs.get((link, channel_id))
            if leg is not None and leg.peer == peer:
                out.append(leg)
        return out

    def gone(self, link: str, channel_id: str) -> bool:
        leg = self.legs.get((link, channel_id))
        return leg is None or leg.gone

    def conv(self, link: str, bridge_id: str | None) -> Conversation | None:
        return self.convs.get((link, bridge_id)) if bridge_id else None

    # -- conversations and their index ----------------------------------------------------------
    def add_conv(self, conv: Conversation) -> Conversation:
        self.convs[(conv.link, conv.bridge_id)] = conv
        if conv.holder is not None:
            _index(self._holding, (conv.link, conv.holder), conv)
        for channel_id in conv.incoming:
            _index(self._dialled_into, (conv.link, channel_id), conv)
        return conv

    def drop_conv(self, conv: Conversation) -> None:
        """Forget a conversation (its members' `member_of` entries are the caller's)."""
        if self.convs.get((conv.link, conv.bridge_id)) is conv:
            del self.convs[(conv.link, conv.bridge_id)]
        if conv.holder is not None:
            _unindex(self._holding, (conv.link, conv.holder), conv)
        for channel_id in conv.incoming:
            _unindex(self._dialled_into, (conv.link, channel_id), conv)

    def set_holder(self, conv: Conversation, channel_id: str | None) -> None:
        if conv.holder == channel_id:
            return
        if conv.holder is not None:
            _unindex(self._holding, (conv.link, conv.holder), conv)
        conv.holder = channel_id
        if channel_id is not None:
            _index(self._holding, (conv.link, channel_id), conv)

    def expect(self, conv: Conversation, channel_id: str) -> None:
        """A leg is being dialled into the conversation (it joins on answer)."""
        if channel_id not in conv.incoming:
            conv.incoming.add(channel_id)
            _index(self._dialled_into, (conv.link, channel_id), conv)

    def unexpect(self, conv: Conversation, channel_id: str) -> None:
        if channel_id in conv.incoming:
            conv.incoming.discard(channel_id)
            _unindex(self._dialled_into, (conv.link, channel_id), conv)

    def clear_incoming(self, conv: Conversation) -> None:
        for channel_id in list(conv.incoming):
            self.unexpect(conv, channel_id)

    def indexed(self) -> int:
        """Index entries (tests check none outlives its conversation or leg)."""
        return len(self._holding) + len(self._dialled_into) + len(self._dialled_for)

    def held_by(self, link: str, channel_id: str) -> list[Conversation]:
        return [c for c in self._holding.get((link, channel_id), ())
                if self.convs.get((link, c.bridge_id)) is c]

    def calls_of(self, link: str, channel_id: str) -> list[Conversation]:
        """The conversations a channel takes part in: the one it is in, those it holds."""
        out = self.held_by(link, channel_id)
        member = self.member_of.get((link, channel_id))
        if member is not None and member not in out:
            out.insert(0, member)
        return out

    def incoming_to(self, link: str, channel_id: str) -> Conversation | None:
        for conv in self._dialled_into.get((link, channel_id), ()):
            if self.convs.get((link, conv.bridge_id)) is conv:
                return conv
        return None

    def closure(self, link: str, channel_ids: Iterable[str]) -> set[str]:
        """The channels a request on these channels may touch: theirs and those of every
        conversation they take part in (the set of locks it takes)."""
        out = set(channel_ids)
        for channel_id in list(out):
            for conv in self.calls_of(link, channel_id):
                out |= conv.parties()
            incoming = self.incoming_to(link, channel_id)
            if incoming is not None:
                out |= incoming.parties()
            leg = self.legs.get((link, channel_id))
            if leg is not None and leg.peer:
                out.add(leg.peer)
        return out

    def forget_link(self, link: str) -> None:
        for table in (self.legs, self.convs, self.member_of, self._holding, self._dialled_into,
                      self._dialled_for):
            for key in [k for k in table if k[0] == link]:
                del table[key]


def _index(table: dict[tuple[str, str], list[Conversation]], key: tuple[str, str],
           conv: Conversation) -> None:
    convs = table.setdefault(key, [])
    if not any(c is conv for c in convs):
        convs.append(conv)


def _unindex(table: dict[tuple[str, str], list[Conversation]], key: tuple[str, str],
             conv: Conversation) -> None:
    convs = table.get(key)
    if convs is not None:
        convs[:] = [c for c in convs if c is not conv]
        if not convs:
            del table[key]


class Locks:
    """One lock per channel: requests and reactions on different calls run concurrently, the
    ones on the same call one after the other. Locks are taken in a fixed order (no deadlock)
    and exist only while held (a free channel costs nothing).

    Taken on every request and every Stasis reaction (about twenty times per call), so a free
    lock is taken without a lock object, a future or a wake-up: a dict entry is the lock, its
    value the tasks waiting for it, in arrival order."""

    def __init__(self) -> None:
        self._held: dict[str, deque[asyncio.Future[None]] | None] = {}

    def hold(self, keys: Iterable[str]) -> Held:
        """`async with locks.hold(keys):` every key's lock, in sorted order."""
        return Held(self, sorted(set(keys)))

    def busy(self) -> int:
        """Locks in use (tests check nothing is left behind)."""
        return len(self._held)

    async def _wait(self, key: str) -> None:
        """Queue for a held key; on return the caller holds it (handed over by `_release`)."""
        waiters = self._held[key]
        if waiters is None:
            waiters = self._held[key] = deque()
        future = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(key)  # handed over as the wait was cancelled: pass it on
            raise

    def _release(self, key: str) -> None:
        waiters = self._held[key]
        while waiters:
            future = waiters.popleft()
            if not future.done():  # (a cancelled waiter is skipped)
                future.set_result(None)
                return
        del self._held[key]


class Held:
    """The locks of some keys, held between `__aenter__` and `__aexit__`; `waited` tells whether
    any of them had to be waited for (so other work may have run in between)."""

    __slots__ = ("_locks", "_keys", "_taken", "waited")

    def __init__(self, locks: Locks, keys: list[str]) -> None:
        self._locks = locks
        self._keys = keys
        self._taken = 0
        self.waited = False

    async def __aenter__(self) -> Held:
        held = self._locks._held
        try:
            for key in self._keys:
                if key in held:
                    self.waited = True
                    await self._locks._wait(key)
                else:
                    held[key] = None
                self._taken += 1
        except BaseException:
            self.release()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        keys, taken = self._keys, self._taken
        self._taken = 0
        for i in range(taken - 1, -1, -1):
            self._locks._release(keys[i])
