"""show links, show monitors, show calls, show agents, trace: the running daemon, live."""

from __future__ import annotations

from typing import Any

from astcti.admin.language import Arg, CommandError, Context, age, command, table
from astcti.admin.trace import CHANNEL_DOCS, CHANNELS


@command("show links", doc="Each Asterisk link (ARI, and AMI where acti_amilink_NN is set):"
                           " up/down, since when, version, last error.",
         example="show links", offline=False, group="status")
async def _show_links(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    assert daemon is not None
    rows = []
    for name, st, error in daemon.link_statuses():
        if st is None:
            rows.append([name, "-", "not started", "-", "-", error])
            continue
        since = st.since.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        version = st.version or "-"
        if "amilink" in name and st.version:
            version = f"AMI {st.version}"
        rows.append([name, st.address, "up" if st.up else "down",
                     f"{since} ({age(st.since)})", version, st.last_error or "-"])
    return (table(rows, ["link", "address", "state", "since", "version", "last error"])
            or "no Asterisk link: set one with `update parameter acti_tlink_01"
               " IP#PORT#APP,USER,ENCRYPTEDPASSWORD`")


@command("show monitors", doc="Which clients monitor which extensions.",
         example="show monitors", offline=False, group="status")
async def _show_monitors(ctx: Context, args: dict[str, Any]) -> str:
    assert ctx.daemon is not None
    monitors = ctx.daemon.monitors()
    rows = []
    for ext, sub in monitors:
        identity = getattr(sub, "identity", None)
        rows.append([ext, f"#{getattr(sub, 'id', '?')}", getattr(sub, "transport", "?"),
                     getattr(sub, "peer", "?"), identity.username if identity else "-"])
    extensions = len({ext for ext, _ in monitors})
    result = table(rows, ["extension", "session", "transport", "peer", "user"])
    return (result + f"\n{len(monitors)} monitor(s) on {extensions} extension(s)") if rows \
        else "no client monitors any extension"


@command("show calls", doc="The calls astcti tracks now, with each monitored leg's state.",
         example="show calls", offline=False, group="status")
async def _show_calls(ctx: Context, args: dict[str, Any]) -> str:
    assert ctx.daemon is not None
    rows = [[conn.callid, conn.extension, conn.direction.value, conn.state.value,
             conn.calling or "-", conn.called or "-", conn.since, conn.channel_name]
            for conn in ctx.daemon.calls()]
    return table(rows, ["callid", "extension", "direction", "state", "calling", "called",
                        "since", "channel"]) or "no calls"


@command("show agents", doc="ACD agents: state, queues, since when (from the ACD service).",
         example="show agents", offline=False, group="status")
async def _show_agents(ctx: Context, args: dict[str, Any]) -> str:
    assert ctx.daemon is not None
    agents = ctx.daemon.agents()
    if agents is None:
        return "ACD not available: this astcti runs no ACD service"
    if not agents:
        return "no agent is logged in"
    keys = list(agents[0].keys())
    cell = lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa
    return table([[cell(a.get(k, "")) or "-" for k in keys] for a in agents], keys)


@command("trace", Arg("SWITCH", "onoff", doc="on or off"),
         Arg("CHANNEL", "channel", optional=True,
             doc="; ".join(f"{c}: {d}" for c, d in CHANNEL_DOCS.items()) +
                 " (off without a channel: all)"),
         doc="Stream live trace lines into the shell until `trace off` or Ctrl-C.",
         example="trace on asc", offline=False, group="status")
async def _trace(ctx: Context, args: dict[str, Any]) -> str:
    daemon = ctx.daemon
    sink = ctx.trace_sink
    if daemon is None or sink is None:
        raise CommandError("trace needs an interactive connection to the daemon")
    channel = args.get("CHANNEL")
    if args["SWITCH"] == "on":
        if channel is None:
            raise CommandError(f"trace on needs a channel: {', '.join(CHANNELS)}"
                               " (e.g. trace on asc)")
        if not daemon.trace.subscribe(channel, sink):
            return f"trace {channel} is already on"
        return f"trace {channel} on: {CHANNEL_DOCS[channel]}; `trace off {channel}` or Ctrl-C" \
               " stops it"
    if channel is None:
        gone = daemon.trace.unsubscribe_all(sink)
        return f"trace off ({', '.join(gone)})" if gone else "no trace was on"
    if not daemon.trace.unsubscribe(channel, sink):
        return f"trace {channel} was not on"
    return f"trace {channel} off"
