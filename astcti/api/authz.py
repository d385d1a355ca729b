"""Who may do what: the one authorisation check every request passes, on every transport.

A user has a role and extensions (astcti-shell `add user NAME agent 101,102`):

- `agent`: monitors and controls its own extensions only;
- `supervisor`: monitors any extension and reads queue and agent state; controls its own;
- `admin`: everything.

Each request declares its `access` (astcti/api/protocol.py `@request(..., access=...)`); the
dispatcher calls :meth:`Authoriser.check` after the fields are valid and before the handler
runs, so no handler, transport or service repeats the decision. A request's `dials` fields
(`destination`) also pass the dial policy of the caller's role (astcti/cti/dialpolicy.py)
before anything is dialled.

Identities that are not store users (an `auth=none` listener's clients; issue 14's clients
identified by address) carry their role and extensions themselves and pass the same check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from astcti.api.protocol import RequestError
from astcti.cti.events import QUEUES_TOPIC
from astcti.cti.dialpolicy import DEFAULT_POLICY, DialPolicy, PolicyError, parse_policy, suggest

if TYPE_CHECKING:
    from astcti.api.protocol import RequestSpec
    from astcti.cti.directory import Directory
    from astcti.store import Store

ROLES = ("agent", "supervisor", "admin")
ROLE_DOCS = {
    "agent": "monitors and controls its own extensions only",
    "supervisor": "monitors any extension, reads queue and agent state; controls its own",
    "admin": "everything",
}

# What a request needs (its `access`):
SESSION = "session"  # any logged-in connection (logout, settings)
MONITOR = "monitor"  # read an extension's calls and events: its own (agent) or any
CONTROL = "control"  # act on an extension (calls, agent state, user data): its own, admin any
SUPERVISE = "supervise"  # every queue and agent at once: supervisor and admin
ADMIN = "admin"  # astcti's own configuration: admin only
ACCESS_DOCS = {
    SESSION: "any logged-in user",
    MONITOR: "role agent: its own extensions; supervisor and admin: any",
    CONTROL: "role agent and supervisor: their own extensions; admin: any",
    SUPERVISE: "role supervisor or admin",
    ADMIN: "role admin",
}
DIAL_PARAMETER = "acti_dial_{role}"


@dataclass(frozen=True)
class Identity:
    """Who a connection acts as. `user` identities are store users and are re-read when an
    administrator changes them (`Auth.current`); others carry their rights themselves."""

    username: str
    role: str  # agent | supervisor | admin
    extensions: frozenset[str] = frozenset()
    user: bool = True
    address: str = ""  # a client of an auth=none listener, known by its address (its seat)

    def owns(self, extension: str) -> bool:
        return extension in self.extensions


def may(identity: Identity, access: str, extension: str | None) -> bool:
    """The rule itself: may this identity do an `access` request on `extension` (or on no
    extension in particular)?"""
    role = identity.role
    if role == "admin" or access == SESSION:
        return True
    if access == ADMIN:
        return False
    if access == SUPERVISE:
        return role == "supervisor"
    if access == MONITOR and role == "supervisor":
        return True
    if extension is None:  # acts on nothing named: only who may act on everything
        return False
    # agent (monitor or control) and supervisor (control): their own extensions
    return identity.owns(extension)


def may_watch(identity: Identity, topic: str) -> bool:
    """May it keep a hub subscription: an extension's events, or a `@` topic (line states:
    everyone; queue figures: supervisors)?"""
    if topic == QUEUES_TOPIC:
        return may(identity, SUPERVISE, None)
    if topic.startswith("@"):
        return True
    return may(identity, MONITOR, topic)


class Authoriser:
    """The check the dispatcher runs for every request (see the module's doc)."""

    def __init__(self, store: Store, directory: Directory) -> None:
        self.store = store
        self.directory = directory
        self._policies: dict[str, DialPolicy] = {}  # policy text -> parsed (cache)
        self._role_policy: dict[str, tuple[int, DialPolicy]] = {}  # role -> (generation, ...)

    def check(self, identity: Identity, spec: RequestSpec, args: dict[str, Any]) -> None:
        """RequestError 403 naming the user and what it may not do; else nothing."""
        access = spec.access(args) if callable(spec.access) else spec.access
        extension = args.get(spec.subject) if spec.subject else None
        if extension is None and spec.subject is not None and access in (MONITOR, CONTROL):
            pass  # left out: the handler takes the client's seat, or says it has none
        elif not may(identity, access, extension):
            if extension is not None and access in (MONITOR, CONTROL):
                raise RequestError(self._refusal(identity, extension), 403)
            needs = "supervisor" if access == SUPERVISE else "admin"
            raise RequestError(f"not allowed: user {identity.username} (role {identity.role})"
                               f" may not use {spec.name}: it needs role {needs}", 403)
        for name in spec.dials:
            number = args.get(name)
            if number is not None:
                self.check_dial(identity, str(number))

    @staticmethod
    def _refusal(identity: Identity, extension: str) -> str:
        words = f"not allowed: user {identity.username} may not act on extension {extension}"
        if identity.address and identity.extensions:  # a seated address: where it sits
            return (f"{words}: address {identity.address} sits at extension"
                    f" {min(identity.extensions)} (log in to act on others)")
        if identity.address:
            return (f"{words}: address {identity.address} has no extension: an administrator"
                    f" seats it with astcti-shell `add ipextnmap {identity.address} EXT` (or log"
                    " in)")
        return words

    def policy(self, role: str) -> DialPolicy:
        """The dial policy of a role, from its parameter: read again after any write to the
        store (so `update parameter` applies at once) or a reload, not at every request (a
        SQLite read cost a makecall ~70 us on a cold host); parsed once per distinct text."""
        generation = self.store.generation
        cached = self._role_policy.get(role)
        if cached is not None and cached[0] == generation:
            return cached[1]
        policy = self._read_policy(role)
        self._role_policy[role] = (generation, policy)
        return policy

    def _read_policy(self, role: str) -> DialPolicy:
        name = DIAL_PARAMETER.format(role=role)
        text = self.store.get_parameter(name, DEFAULT_POLICY)
        if text is None:
            text = DEFAULT_POLICY
        policy = self._policies.get(text)
        if policy is None:
            try:
                policy = parse_policy(text)
            except PolicyError:  # the shell refuses such values; a store edited by hand
                policy = parse_policy("")  # may still hold one: nothing is dialled
            if len(self._policies) > 64:
                self._policies.clear()
            self._policies[text] = policy
        return policy

    def check_dial(self, identity: Identity, number: str) -> None:
        """RequestError 403 unless the role's dial policy allows the number; the words name
        the pattern to add."""
        if self.policy(identity.role).allows(number, self.directory.extensions):
            return
        parameter = DIAL_PARAMETER.format(role=identity.role)
        raise RequestError(f"not allowed: user {identity.username} (role {identity.role}) may"
                           f" not dial {number}: add {suggest(number)} to parameter"
                           f" {parameter}", 403)
