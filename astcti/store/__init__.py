"""SQLite parameter store (replaces the seed's Access MDB reached through an ODBC DSN)."""

from astcti.store.store import DEFAULT_DB_PATH, Store

__all__ = ["DEFAULT_DB_PATH", "Store"]
