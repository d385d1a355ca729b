"""The one request dispatcher: every transport hands it raw requests and gets responses.

Transports only parse frames, authenticate and frame; what a request does is decided here and
in the services it calls. Here, in this order, for every request on every transport: the
envelope and fields are checked, the caller's current rights (astcti/api/authz.py: role,
extensions, dial policy), then that the extension is served, then the handler runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from astcti.api.auth import address_identity
from astcti.api.authz import Authoriser, Identity
from astcti.api.protocol import (
    NOT_LOGGED_IN, REQUESTS, EnvelopeError, RequestError, RequestSpec, parse_envelope, response,
)
from astcti.api.services import Services
from astcti.api.session import Session
from astcti.errors import AstctiError
from astcti.pbx.ari import AriError

__all__ = ["Dispatcher", "Services", "Session"]

log = logging.getLogger(__name__)


def ari_status(status: int) -> int:
    """The HTTP status for a client when Asterisk refused an operation: 409 when the call's
    state does not allow it (Asterisk's 404/409/412/422), 503 when Asterisk is unreachable, 502
    (bad gateway) for anything else."""
    if status in (404, 409, 412, 422):
        return 409
    return 503 if status == 503 else 502


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.authoriser = Authoriser(services.store, services.directory)
        # admin trace (astcti-shell `trace on client`): (session, request, response)
        self.tap: Callable[[Session, Any, dict[str, Any]], None] | None = None
        import astcti.api.requests  # noqa: F401  (registers every request)

    async def handle(self, session: Session, raw: str | bytes | dict[str, Any]
                     ) -> tuple[dict[str, Any], int]:
        """The response to one request and the HTTP status that fits it."""
        reply, status = await self._handle(session, raw)
        if self.tap is not None:
            self.tap(session, raw, reply)
        return reply, status

    async def _handle(self, session: Session, raw: str | bytes | dict[str, Any]
                      ) -> tuple[dict[str, Any], int]:
        try:
            env = parse_envelope(raw)
        except EnvelopeError as exc:
            return response(exc.id, exc.error), exc.status
        spec = REQUESTS[env.name]
        identity = self._current(session)
        session.identity = identity  # the rights as they are now (or gone: a removed user)
        if spec.login and identity is None:
            return response(env.id, NOT_LOGGED_IN), 401
        try:
            args = spec.validate(env.message)
            self._seat(spec, session, args)
            if identity is not None:
                self.authoriser.check(identity, spec, args)
            self._served(spec, args)
            extra = await spec.handler(self.services, session, args) or {}
        except RequestError as exc:
            return response(env.id, exc.error), exc.status
        except AstctiError as exc:  # a service's refusal, link down, store failure: words
            return response(env.id, str(exc)), getattr(exc, "status", 503)
        except AriError as exc:  # Asterisk said no to what the service asked of it
            log.info("request %s from %r: Asterisk refused: %s", env.name, session, exc.message)
            return response(env.id, f"Asterisk refused {env.name}: {exc.message}"), \
                ari_status(exc.status)
        except Exception:
            log.exception("request %s from %r failed", env.name, session)
            return response(env.id, "internal error: see the astcti log"), 500
        return response(env.id, **extra), 200

    def _current(self, session: Session) -> Identity | None:
        """The session's identity with its rights as they are now: a user re-read after an
        administrator's change (None once removed), a client known by its address re-seated
        from the ipextnmap (so `add ipextnmap` applies at the next request)."""
        identity = session.identity
        if identity is not None and identity.address:
            return address_identity(self.services.seating, session.peer)
        return self.services.auth.current(identity)

    def _seat(self, spec: RequestSpec, session: Session, args: dict[str, Any]) -> None:
        """An omitted extension is the one the client sits at (free seating, ipextnmap), so
        the check below judges the extension the request will act on."""
        seating = self.services.seating
        if spec.subject and spec.subject not in args and seating is not None:
            seat = seating.extension_of(session.peer)
            if seat is not None:
                args[spec.subject] = seat

    def _served(self, spec: RequestSpec, args: dict[str, Any]) -> None:
        """The request's extension is configured and a connected Asterisk serves it."""
        number = args.get(spec.subject) if spec.subject and spec.served else None
        if number is None:
            return
        directory = self.services.directory
        link = directory.link_of(number)
        if link is None or not link.up:
            raise RequestError(directory.why_unserved(number),
                               404 if number not in directory.extensions else 409)

    def closed(self, session: Session) -> None:
        """A transport's connection ended: its monitors end with it."""
        self.services.hub.detach_all(session)
