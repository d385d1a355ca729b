"""show users, add user, remove user, passwd user: the client logins."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import Arg, CommandError, Context, command, table

MIN_PASSWORD = 8


@command("show users", doc="List the client users and their roles (never their passwords).",
         example="show users", group="users")
async def _show_users(ctx: Context, args: dict[str, Any]) -> str:
    rows = [[u.username, u.role, u.created] for u in ctx.store.users()]
    return table(rows, ["user", "role", "created"]) or "no users: add one with `add user NAME`"


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise CommandError(f"password too short: use at least {MIN_PASSWORD} characters;"
                           " nothing changed")


def _revoke(ctx: Context, username: str) -> int:
    return ctx.daemon.revoke_user(username) if ctx.daemon is not None else 0


@command("add user", Arg("NAME", "new-user", doc="login name"),
         Arg("ROLE", "role", optional=True,
             doc="client (default), supervisor (may watch every queue) or admin"),
         doc="Create a client login; the password is prompted for (or read from stdin).",
         example="add user alice client", secret="a password for the new user",
         secret_twice=True, group="users")
async def _add_user(ctx: Context, args: dict[str, Any]) -> str:
    name, role = args["NAME"], args.get("ROLE", "client")
    if name in {u.username for u in ctx.store.users()}:
        raise CommandError(f"user {name} exists: change its password with `passwd user {name}`")
    _check_password(ctx.secret or "")
    ctx.store.set_user(name, ctx.secret or "", role)
    return f"user {name} added (role {role})"


@command("remove user", Arg("NAME", "user", doc="an existing user"),
         doc="Delete a login; its session tokens stop working at once.",
         example="remove user alice", group="users")
async def _remove_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    if not ctx.store.remove_user(name):
        raise CommandError(f"no user {name}: see `show users`")
    revoked = _revoke(ctx, name)
    return f"user {name} removed" + (f"; {revoked} token(s) revoked" if revoked else "")


@command("passwd user", Arg("NAME", "user", doc="an existing user"),
         doc="Change a user's password (prompted for); its old tokens stop working.",
         example="passwd user alice", secret="the new password", secret_twice=True,
         group="users")
async def _passwd_user(ctx: Context, args: dict[str, Any]) -> str:
    name = args["NAME"]
    users = {u.username: u for u in ctx.store.users()}
    if name not in users:
        raise CommandError(f"no user {name}: add it with `add user {name}`")
    _check_password(ctx.secret or "")
    ctx.store.set_user(name, ctx.secret or "", users[name].role)
    revoked = _revoke(ctx, name)
    return f"password of {name} changed" + (f"; {revoked} token(s) revoked" if revoked else "")
