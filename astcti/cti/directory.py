"""Configured extensions and the Asterisk link that serves each.

As in the seed, the daemon watches every extension in the store for as long as it is configured,
across its own restarts and Asterisk's: on each link (re)connect the extensions whose endpoint
exists on that Asterisk are subscribed (endpoint + device state).

Several Asterisks (`acti_tlink_01`, `_02`...): clients name an extension by its number alone
(the astCTI protocol has no PBX field), so a number must mean one phone. When the endpoint of
an extension exists on more than one Asterisk, astcti does not guess which phone the number is
(a wrong guess puts one agent's calls on another agent's screen): the extension is served by
none of them, every request on it answers why, until the operator pins it to a link
(`pin extension NUM acti_tlink_NN` in astcti-shell). A pinned extension is served only by that
link. Which Asterisks have an endpoint is what each reported at its last connect, so the
refusal does not depend on which Asterisk connected first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from astcti.pbx.link import AsteriskLink

log = logging.getLogger(__name__)

TECHNOLOGIES = ("PJSIP", "SIP", "IAX2", "DAHDI", "Local")


@dataclass(frozen=True)
class Extension:
    number: str
    technology: str
    link: str = ""  # pinned to this link (acti_tlink_NN); "" = wherever the endpoint is
    answer: str = ""  # how `answer` reaches its phone (talk | reoffer | none); "" = default

    @property
    def endpoint(self) -> str:
        return f"{self.technology}/{self.number}"

    @property
    def sources(self) -> list[str]:
        return [f"endpoint:{self.endpoint}", f"deviceState:{self.endpoint}"]


class Directory:
    """Which extensions are watched and where."""

    def __init__(self) -> None:
        self.extensions: dict[str, Extension] = {}
        self.links: dict[str, AsteriskLink] = {}
        self.serving: dict[str, str] = {}  # extension -> link name
        self._by_endpoint: dict[tuple[str, str], str] = {}  # (link, endpoint) -> extension
        self._warned: set[tuple[str, ...]] = set()  # ambiguities already logged

    def resolve(self, link: str, endpoint: str) -> str | None:
        """The watched extension of a channel's endpoint on a link (the tracker's resolver)."""
        return self._by_endpoint.get((link, endpoint))

    def link_of(self, extension: str) -> AsteriskLink | None:
        name = self.serving.get(extension)
        return self.links.get(name) if name else None

    def add_link(self, link: AsteriskLink) -> None:
        self.links[link.name] = link

    def remove_link(self, name: str) -> None:
        """Forget a link (stopped or reconfigured): its extensions wait for another one."""
        self.links.pop(name, None)
        for number, serving in list(self.serving.items()):
            if serving == name:
                self._unassign(number)

    # -- who serves an extension -------------------------------------------------------------
    def holders(self, ext: Extension) -> list[str]:
        """The links whose Asterisk has the extension's endpoint (as last reported)."""
        return sorted(n for n, link in self.links.items() if ext.endpoint in link.endpoints)

    def ambiguous(self, number: str) -> list[str]:
        """The links an unpinned extension is found on, when there is more than one."""
        ext = self.extensions.get(number)
        if ext is None or ext.link:
            return []
        holders = self.holders(ext)
        return holders if len(holders) > 1 else []

    def _server_for(self, ext: Extension) -> str | None:
        """The link that serves `ext` (connected or not): its pinned link if that Asterisk has
        the endpoint, else the only Asterisk that has it; None when none or several have it."""
        if ext.link:
            link = self.links.get(ext.link)
            return ext.link if link is not None and ext.endpoint in link.endpoints else None
        holders = self.holders(ext)
        if len(holders) > 1:
            key = (ext.number, *holders)
            if key not in self._warned:
                self._warned.add(key)
                log.error("%s", self.ambiguity_error(ext.number, holders))
            return None
        return holders[0] if holders else None

    async def link_up(self, link: AsteriskLink) -> list[tuple[str, str]]:
        """Subscribe every configured extension this Asterisk serves (in batches). Returns the
        (extension, reason) of those another link served until now and no longer does (this
        Asterisk has the same number: the daemon tells their clients with linkdown)."""
        sources: list[str] = []
        lost: list[tuple[str, str]] = []
        for ext in self.extensions.values():
            current = self.serving.get(ext.number)
            wanted = self._server_for(ext)
            if wanted != current:
                if current is not None:
                    self._unassign(ext.number)
                    if current in self.links:
                        await self.links[current].unsubscribe(ext.sources)
                        if current != link.name:
                            lost.append((ext.number, self.why_unserved(ext.number)))
                if wanted is not None and wanted != link.name:
                    self._assign(ext, self.links[wanted])
                    await self.links[wanted].subscribe(ext.sources)
            if wanted == link.name:
                self._assign(ext, link)
                sources += ext.sources
        await link.subscribe(sources)
        return lost

    def _assign(self, ext: Extension, link: AsteriskLink) -> None:
        self.serving[ext.number] = link.name
        self._by_endpoint[(link.name, ext.endpoint)] = ext.number

    def _unassign(self, number: str) -> None:
        name = self.serving.pop(number, None)
        ext = self.extensions.get(number)
        if name and ext:
            self._by_endpoint.pop((name, ext.endpoint), None)

    async def add(self, number: str, technology: str, link: str = "",
                  answer: str = "") -> str | None:
        """Watch an extension (or change how); the name of the link now serving it, if any."""
        old = self.extensions.get(number)
        answer = answer or (old.answer if old else "")
        if old and (old.technology, old.link) != (technology, link):
            await self.remove(number)
        ext = Extension(number, technology, link, answer)
        self.extensions[number] = ext
        name = self._server_for(ext)
        if name is None:
            return None  # a link that connects later assigns it in link_up
        self._assign(ext, self.links[name])
        await self.links[name].subscribe(ext.sources)
        return name if self.links[name].up else None

    def set_answer(self, number: str, answer: str) -> None:
        """Change how `answer` reaches an extension's phone (no resubscription needed)."""
        ext = self.extensions.get(number)
        if ext is not None:
            self.extensions[number] = Extension(ext.number, ext.technology, ext.link, answer)

    async def remove(self, number: str) -> None:
        ext = self.extensions.pop(number, None)
        if ext is None:
            return
        link = self.link_of(number)
        name = self.serving.pop(number, None)
        if name:
            self._by_endpoint.pop((name, ext.endpoint), None)
        if link is not None:
            await link.unsubscribe(ext.sources)

    # -- words ----------------------------------------------------------------------------------
    @staticmethod
    def ambiguity_error(number: str, holders: list[str]) -> str:
        return (f"extension {number} is on {len(holders)} Asterisks ({', '.join(holders)}):"
                f" astcti will not guess which phone it is: pin it with `pin extension {number}"
                f" {holders[-1]}` in astcti-shell (or remove the endpoint from all but one)")

    def why_unserved(self, number: str) -> str:
        """The error line for a request on an extension no link serves."""
        ext = self.extensions.get(number)
        if ext is None:
            return (f"unknown extension {number}: add it with `add extension {number}"
                    " [TECHNOLOGY]` in astcti-shell")
        if not self.links:
            return f"no Asterisk link is configured for extension {number}"
        holders = self.ambiguous(number)
        if holders:
            return self.ambiguity_error(number, holders)
        if ext.link:
            link = self.links.get(ext.link)
            if link is None:
                return (f"extension {number} is pinned to {ext.link}, which is not configured:"
                        f" set {ext.link} or `unpin extension {number}`")
            if not link.up:
                return (f"Asterisk link {ext.link} is down: extension {number} (pinned to it)"
                        " cannot be monitored until it is back")
            if ext.endpoint not in link.endpoints:
                return (f"extension {number} ({ext.endpoint}) is not an endpoint on {ext.link},"
                        " the link it is pinned to: create it there or unpin it")
        if not any(link.up for link in self.links.values()):
            return f"Asterisk link is down: extension {number} cannot be monitored until it is back"
        holders = self.holders(ext)
        if holders and not any(self.links[n].up for n in holders):
            return (f"Asterisk link {holders[0]} is down: extension {number} cannot be monitored"
                    " until it is back")
        return (f"extension {number} ({ext.endpoint}) is not an endpoint on any connected"
                " Asterisk: create it on the PBX or fix its technology")
