"""help, quit, exit: the shell's own words."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import Arg, Context, command, help_text


@command("help", Arg("COMMAND", "command", optional=True, rest=True),
         doc="List the commands, or show one command's syntax and an example.",
         example="help add tcp", group="shell")
async def _help(ctx: Context, args: dict[str, Any]) -> str:
    return help_text(args.get("COMMAND", "").split())


@command("quit", doc="Leave the shell (also `exit` or Ctrl-D).", example="quit", group="shell")
async def _quit(ctx: Context, args: dict[str, Any]) -> str:
    return ""


@command("exit", doc="Leave the shell.", example="exit", group="shell")
async def _exit(ctx: Context, args: dict[str, Any]) -> str:
    return ""
