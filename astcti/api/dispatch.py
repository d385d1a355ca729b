"""The one request dispatcher: every transport hands it raw requests and gets responses.

Transports only parse frames, authenticate and frame; what a request does is decided here and
in the services it calls.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from astcti.api.auth import address_identity, check_extension
from astcti.api.protocol import (
    NOT_LOGGED_IN, REQUESTS, EnvelopeError, RequestError, parse_envelope, response,
)
from astcti.api.services import Services
from astcti.api.session import Session
from astcti.errors import AstctiError

__all__ = ["Dispatcher", "Services", "Session"]

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
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
        if spec.login and session.identity is None:
            return response(env.id, NOT_LOGGED_IN), 401
        try:
            args = spec.validate(env.message)
            if session.identity is not None and session.identity.address:
                self._authorise_address(session, args)
            extra = await spec.handler(self.services, session, args) or {}
        except RequestError as exc:
            return response(env.id, exc.error), exc.status
        except AstctiError as exc:  # a service's refusal, link down, store failure: words
            return response(env.id, str(exc)), getattr(exc, "status", 503)
        except Exception:
            log.exception("request %s from %r failed", env.name, session)
            return response(env.id, "internal error: see the astcti log"), 500
        return response(env.id, **extra), 200

    def _authorise_address(self, session: Session, args: dict[str, Any]) -> None:
        """A client known by its address (an `auth=none` listener) acts on its seat only; the
        ipextnmap as it is now decides, so `add ipextnmap` applies at the next request."""
        session.identity = address_identity(self.services.seating, session.peer)
        if "extension" in args:
            check_extension(session.identity, args["extension"])

    def closed(self, session: Session) -> None:
        """A transport's connection ended: its monitors end with it."""
        self.services.hub.detach_all(session)
