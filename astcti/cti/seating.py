"""Free seating: which extension a client address sits at (the astCTI console's `ipextnmap`).

The astCTI author's clients cannot log in: on an `auth=none` listener a client is known by its
address, and this map says which extension that address works at (`myextension`), and so the
only extension such a client may act on. Kept in the store (`add ipextnmap ADDRESS EXT`) and in
memory here, so a lookup per request costs a dict access.
"""

from __future__ import annotations

import ipaddress

from astcti.errors import AstctiError
from astcti.store import Store


class SeatingError(AstctiError):
    """A bad address or mapping; the message names the fix."""


def normalise_address(text: str) -> str:
    """'192.168.001.10' is refused, '::ffff:10.0.0.1' -> '10.0.0.1', IPv6 compressed."""
    try:
        addr = ipaddress.ip_address(text.strip().split("%")[0])
    except ValueError:
        raise SeatingError(f"invalid address {text[:60]!r}: use one IP address, e.g."
                           " 192.168.1.101") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


class Seating:
    """address -> extension, read from the store once and changed through `map`/`unmap`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.by_address: dict[str, str] = store.ipextnmap()

    def extension_of(self, peer: str) -> str | None:
        """The extension mapped to a client's address (None: no mapping, or not an address)."""
        found = self.by_address.get(peer)
        if found is not None:
            return found
        try:
            return self.by_address.get(normalise_address(peer))
        except SeatingError:
            return None

    def map(self, address: str, extension: str) -> str:
        """Store the mapping, then use it; returns the normalised address."""
        address = normalise_address(address)
        self.store.map_address(address, extension)
        self.by_address[address] = extension
        return address

    def unmap(self, address: str) -> bool:
        address = normalise_address(address)
        gone = self.store.unmap_address(address)
        self.by_address.pop(address, None)
        return gone

    def reload(self) -> None:
        """Re-read the store (after it was changed by other means, e.g. `kill -HUP`)."""
        self.by_address = self.store.ipextnmap()
