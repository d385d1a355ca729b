"""show users, add user, update user, remove user, passwd user: the client logins, their role
and the extensions they may act on (astcti/api/authz.py decides with them)."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import (
    VALIDATORS, Arg, CommandError, Context, command, new_password, table,
)
from astcti.api.authz import ROLE_DOCS
from astcti.store.store import UserRow

MIN_PASSWORD = 8
ROLE_HELP = "; ".join(f"{role}: {doc}" for role, doc in ROLE_DOCS.items())


def _note(user: UserRow) -> str:
    if user.migrated:
        return (f"from before roles, so admin: narrow it with `update user {user.username}"
                " role agent` and `update user ... extensions 101`")
    if user.role != "admin" and not user.extensions:
        return "no extension: acts on none (`update user ... extensions 101`)"
    return ""


@command("show users", doc="List the client users, their role and extensions (never their"
                           " passwords).", example="show users", group="users")
async def _show_users(ctx: Context, args: dict[str, Any]) -> str:
    rows = [[u.username, u.role, ",".join(u.extensions) or "-", u.created, _note(u)]
            for u in ctx.store.users()]
    return (table(rows, ["user", "role", "extensions", "created", "note"])
            or "no users: add one with `add user NAME agent 101`")


def _unknown_extensions(ctx: Context, extensions: list[str]) -> None:
    """A warning (not a refusal: the extension may be added next) for unconfigured ones."""
    configured = {e.number for e in ctx.store.extensions()}
    missing = [e for e in extensions if e not in configured]
    if missing:
        ctx.warnings.append(f"extension {', '.join(missing)} is not configured yet: add it with"
                            f" `add extension {missing[0]}`")


def _split(text: str) -> list[str]:
    return [e for e in text.split(",") if e]


async def _apply(ctx: Context, name: str) -> str:
    """The running daemon uses the user's new rights at once; the words say what ended."""
    if ctx.daemon is None:
        return ""
    ended = ctx.daemon.refresh_user(name)
    return f"; {ended} monitor(s) it may no longer have ended" if ended else ""


def _revoke(ctx: Context, name: str) -> str:
    """A running daemon drops the user's tokens and connections at once (removed, or its
    password changed); the words say how many."""
    revoked = ctx.daemon.revoke_user(name) if ctx.daemon is not None else 0
    return f"; {revoked} token(s) revoked" if revoked else ""


@command("add user", Arg("NAME", "new-user", doc="login name"),
         Arg("ROLE", "role", optional=True,
             doc=f"agent (default), supervisor or admin ({ROLE_HELP})"),
         Arg("EXTENSIONS", "extensions", optional=True,
             doc="comma list of the extensions it acts on, e.g. 101,102"),
         doc="Create a client login with its role and extensions; the password is prompted for"
             " (or read from stdin).",
         example="add user alice agent 101,102", secret="a password for the new user",
         secret_twice=True, group="users")
async def _add_user(ctx: Context, args: dict[str, Any]) -> str:
    name, role = args["NAME"], args.get("ROLE", "agent")
    extensions = _split(args.get("EXTENSIONS", ""))
    if name in {u.username for u in ctx.store.users()}:
        raise CommandError(f"user {name} exists: change its password with `passwd user {name}`,"
                           f" its rights with `update user {name} role|extensions ...`")
    password = new_password(ctx, MIN_PASSWORD)
    _unknown_extensions(ctx, extensions)
    if role != "admin" and not extensions:
        ctx.warnings.append(f"{role} {name} has no extension: it can log in but act on none;"
                            f" give it some with `update user {name} extensions 101`")
    ctx.store.set_user(name, password, role, extensions)
    if ctx.daemon is not None:
        ctx.daemon.refresh_user(name)
    on = f", extensions {','.join(extensions)}" if extensions else ""
    return f"user {name} added (role {role}{on})"


@command("update user", Arg("NAME", "user", doc="an existing user"),
         Arg("SETTING", "user-field", doc="role or extensions"),
         Arg("VALUE", "value", doc="agent, supervisor or admin; or a comma list of extensions"
                                   " (none: no extension)"),
         doc="Change a user's role or extensions; its connections use the new rights at their"
             " next request (monitors it may no longer have end now).",
         example="update user alice extensions 103", group="users")
async def _update_user(ctx: Context, args: dict[str, Any]) -> str:
    name, setting, value = args["NAME"], args["SETTING"], args["VALUE"]
    user = ctx.store.user(name)
    if user is None:
        raise CommandError(f"no user {name}: add it with `add user {name} agent 101`")
    if setting == "role":
        role = VALIDATORS["role"](value)
        ctx.store.update_user(name, role=role)
        changed = f"role of {name}: {role} (was {user.role})"
    else:
        extensions = _split(VALIDATORS["extensions"](value))
        _unknown_extensions(ctx, extensions)
        ctx.store.update_user(name, extensions=extensions)
        changed = (f"extensions of {name}: {','.join(extensions) or 'none'}"
                   f" (was {','.join(user.extensions) or 'none'})")
    return changed + await _apply(ctx, name)


@command("remove user", Arg("NAME", "user", doc="an existing user"),
         doc="Delete a login; its session tokens and live connections stop working at once.",
         example="remove user alice", group="users")
async def _remove_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    if not ctx.store.remove_user(name):
        raise CommandError(f"no user {name}: see `show users`")
    return f"user {name} removed" + _revoke(ctx, name)


@command("passwd user", Arg("NAME", "user", doc="an existing user"),
         doc="Change a user's password (prompted for); its old tokens stop working.",
         example="passwd user alice", secret="the new password", secret_twice=True,
         group="users")
async def _passwd_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    user = ctx.store.user(name)
    if user is None:
        raise CommandError(f"no user {name}: add it with `add user {name}`")
    ctx.store.set_user(name, new_password(ctx, MIN_PASSWORD), user.role)
    return f"password of {name} changed" + _revoke(ctx, name)
