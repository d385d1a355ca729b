"""Client-facing API: the protocol, its one dispatcher, and the transports that carry it."""
