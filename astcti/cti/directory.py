"""Configured extensions and the Asterisk link that serves each.

As in the seed, the daemon watches every extension in the store for as long as it is configured,
across its own restarts and Asterisk's: on each link (re)connect the extensions whose endpoint
exists on that Asterisk are subscribed (endpoint + device state).
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

    async def link_up(self, link: AsteriskLink) -> None:
        """Subscribe every configured extension this Asterisk has (in batches)."""
        sources: list[str] = []
        for ext in self.extensions.values():
            if ext.endpoint in link.endpoints:
                if self._assign(ext, link):
                    sources += ext.sources
            elif self.serving.get(ext.number) == link.name:
                self._unassign(ext.number)
        await link.subscribe(sources)

    def _assign(self, ext: Extension, link: AsteriskLink) -> bool:
        """Make `link` serve `ext` unless another connected Asterisk already does."""
        current = self.serving.get(ext.number)
        if current and current != link.name and self.links[current].up:
            return False
        if current and current != link.name:
            self._unassign(ext.number)
        self.serving[ext.number] = link.name
        self._by_endpoint[(link.name, ext.endpoint)] = ext.number
        return True

    def _unassign(self, number: str) -> None:
        name = self.serving.pop(number, None)
        ext = self.extensions.get(number)
        if name and ext:
            self._by_endpoint.pop((name, ext.endpoint), None)

    async def add(self, number: str, technology: str, answer: str = "") -> str | None:
        """Watch an extension; the name of the link now serving it, if any."""
        old = self.extensions.get(number)
        answer = answer or (old.answer if old else "")
        if old and old.technology != technology:
            await self.remove(number)
        ext = Extension(number, technology, answer)
        self.extensions[number] = ext
        for link in self.links.values():
            if link.up and ext.endpoint in link.endpoints and self._assign(ext, link):
                await link.subscribe(ext.sources)
                return link.name
        return None  # a link that connects later assigns it in link_up

    def set_answer(self, number: str, answer: str) -> None:
        """Change how `answer` reaches an extension's phone (no resubscription needed)."""
        ext = self.extensions.get(number)
        if ext is not None:
            self.extensions[number] = Extension(ext.number, ext.technology, answer)

    async def remove(self, number: str) -> None:
        ext = self.extensions.pop(number, None)
        if ext is None:
            return
        link = self.link_of(number)
        self._unassign(number)
        if link is not None:
            await link.unsubscribe(ext.sources)

    def why_unserved(self, number: str) -> str:
        """The error line for a startmonitor on an extension no link serves."""
        ext = self.extensions.get(number)
        if ext is None:
            return (f"unknown extension {number}: add it with `add extension {number}"
                    " [TECHNOLOGY]` in astcti-shell")
        if not self.links:
            return f"no Asterisk link is configured for extension {number}"
        if not any(link.up for link in self.links.values()):
            return f"Asterisk link is down: extension {number} cannot be monitored until it is back"
        return (f"extension {number} ({ext.endpoint}) is not an endpoint on any connected"
                " Asterisk: create it on the PBX or fix its technology")
