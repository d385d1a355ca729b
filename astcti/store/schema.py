"""Versioned schema of the parameter store.

Each migration moves the file from version N-1 to N and is applied in one transaction. The
version lives in SQLite's ``user_version`` so any tool can read it.
"""

from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]

#: Parameters every store starts with: name -> (default value, description).
DEFAULT_PARAMETERS: dict[str, tuple[str, str]] = {
    "acti_defaultexttype": ("PJSIP", "Technology of extensions added without one (PJSIP, SIP, IAX2)"),
    "acti_heartbeat": ("5", "Seconds between pings on each ARI websocket; a link is down after 2 missed"),
    "acti_loginstate": ("notready", "Agent state right after acdlogin: ready or notready"),
    "acti_acwtimeout": ("30", "Seconds of after-call work before the agent returns to ready (0: stay)"),
    "acti_autoacw": ("0", "1: put an agent in after-call work when a queue call ends"),
    "acti_agentgroups": ("", "Queues an agent joins on acdlogin when the request names none (comma list)"),
    "acti_flavour": ("asterisk", "PBX flavour: asterisk (astcti dialplan) or freepbx (FreePBX contexts)"),
    "acti_resume_size": ("1000", "Events kept per extension for clients that resume"),
    "acti_resume_age": ("300", "Seconds events are kept for clients that resume"),
}


def _v1(db: sqlite_utils.Database) -> None:
    db["parameters"].create(
        {"name": str, "value": str, "description": str}, pk="name", not_null={"value"}
    )
    db["extensions"].create({"number": str, "technology": str}, pk="number",
                            not_null={"technology"})
    db["listeners"].create(
        {"port": int, "bind": str, "allow": str, "protocol": str, "auth": str, "tls": int},
        pk="port",
        not_null={"bind", "allow", "protocol", "auth"},
        defaults={"bind": "127.0.0.1", "allow": "*", "auth": "token", "tls": 0},
    )
    db["users"].create(
        {"username": str, "password_hash": str, "role": str, "created": str},
        pk="username",
        not_null={"password_hash", "role"},
        defaults={"role": "client"},
    )
    db["parameters"].insert_all(
        [{"name": n, "value": v, "description": d} for n, (v, d) in DEFAULT_PARAMETERS.items()]
    )


#: Parameters added by v2 (call control dial context, ACD agents, user data).
V2_PARAMETERS: dict[str, tuple[str, str]] = {
    "acti_dial_context": ("from-internal", "Dialplan context of makecall/consultation/transfer"
                          " destinations that are not configured extensions"),
    "acti_reasoncodes": ("", "Not-ready reason codes acdsetstate accepts (comma list, e.g."
                             " break,lunch,1,2); empty: any word or number"),
    "acti_userdata_grace": ("60", "Seconds a call's user data is kept after the call ends"),
}


def _v2(db: sqlite_utils.Database) -> None:
    """Agent state (survives daemon restarts) and per-call user data (survives them too)."""
    db["agents"].create(
        {"extension": str, "agentid": str, "groups": str, "state": str, "reason": str,
         "since": str, "acw_until": float},
        pk="extension", not_null={"agentid", "groups", "state"},
    )
    db["agents"].create_index(["agentid"], unique=True)
    db["userdata"].create({"callid": str, "data": str, "updated": str, "expires": float},
                          pk="callid", not_null={"data"})
    db["parameters"].insert_all(
        [{"name": n, "value": v, "description": d} for n, (v, d) in V2_PARAMETERS.items()],
        ignore=True,
    )


def _v3(db: sqlite_utils.Database) -> None:
    """Free seating (client address -> extension, the astCTI console's `ipextnmap`), agent
    passwords checked at ACD login, and an agent's ready mode (auto-in or manual-in)."""
    db["ipextnmap"].create({"address": str, "extension": str}, pk="address",
                           not_null={"extension"})
    db["agent_passwords"].create({"agentid": str, "password_hash": str}, pk="agentid",
                                 not_null={"password_hash"})
    db["agents"].add_column("mode", str)


#: How astcti's `answer` request takes a ringing call off-hook (docs/call-control.md).
ANSWER_MODES = ("talk", "reoffer", "none")

#: Parameters of features added without a schema change: inserted (with their defaults) into
#: any store that lacks them each time it is opened, whatever its schema version.
FEATURE_PARAMETERS: dict[str, tuple[str, str]] = {
    "acti_screenpop_url": ("", "Agent desktop: URL opened for each incoming call, e.g."
                               " https://crm.example/?phone={calling} ({calling} {callingname}"
                               " {called} {callid} {extension} {queue} {agentid}"
                               " {userdata.KEY}); empty: no screen pop"),
    "acti_screenpop_mode": ("tab", "Agent desktop: open the screen pop in a new tab or in an"
                                   " iframe under the call"),
    "acti_servicelevel": ("20", "Wallboard: seconds within which an answered queue call counts"
                                " for the service level"),
    "acti_wallboard_queues": ("", "Wallboard: queues shown even before an agent joins them"
                                  " (comma list)"),
}


def ensure_feature_parameters(db: sqlite_utils.Database) -> None:
    db["parameters"].insert_all(
        [{"name": n, "value": v, "description": d} for n, (v, d) in FEATURE_PARAMETERS.items()],
        ignore=True,
    )


def _v4(db: sqlite_utils.Database) -> None:
    """An extension may be pinned to one Asterisk link (the same number on two PBXs)."""
    db.execute("ALTER TABLE extensions ADD COLUMN link TEXT NOT NULL DEFAULT ''")


#: Parameters added by v5 (phone capabilities for `answer`).
V5_PARAMETERS: dict[str, tuple[str, str]] = {
    "acti_answer": ("reoffer", "How `answer` takes a ringing phone off-hook when its extension"
                    " says nothing: talk (SIP NOTIFY Event: talk, then re-offer), reoffer"
                    " (ring it again with auto-answer headers) or none (answer by hand)"),
}


def _v5(db: sqlite_utils.Database) -> None:
    """Per-extension answer mode: which phones honour NOTIFY talk or auto-answer headers."""
    db.execute("ALTER TABLE extensions ADD COLUMN answer TEXT NOT NULL DEFAULT ''")
    db["parameters"].insert_all(
        [{"name": n, "value": v, "description": d} for n, (v, d) in V5_PARAMETERS.items()],
        ignore=True,
    )


#: Parameters added by v6 (who may do what, hardened transports).
V6_PARAMETERS: dict[str, tuple[str, str]] = {
    "acti_dial_agent": ("internal,_0[1-7]X.", "Numbers users of role agent (and clients of"
                        " auth=none listeners, known by their address) may dial (makecall,"
                        " consultation, single-step transfer/conference): comma list of"
                        " `internal` (configured extensions) and Asterisk patterns (_0[1-7]X."
                        " national, _00X. international...)"),
    "acti_dial_supervisor": ("internal,_0[1-7]X.", "Numbers users of role supervisor may dial"
                             " (same syntax as acti_dial_agent)"),
    "acti_dial_admin": ("internal,_0[1-7]X.", "Numbers users of role admin may dial (same"
                        " syntax as acti_dial_agent)"),
    "acti_origins": ("", "Web origins (https://crm.example.com) whose pages may use astcti from"
                         " a browser, besides astcti's own pages; comma list, * for any"),
    "acti_ari_cafile": ("", "PEM file of the CA(s) that sign Asterisk's certificate, for"
                            " https/wss links (empty: the system's CAs)"),
}


def _v6(db: sqlite_utils.Database) -> None:
    """Users get extensions; listeners remember a forced auth=none for everyone.

    Users from before roles could do everything: they become `admin` (marked `migrated`, which
    `show users` reports) so nothing stops working silently; the administrator then narrows
    them with `update user NAME role agent` and `update user NAME extensions 101`.
    An auth=none listener open to every address was allowed before: it keeps opening (marked
    forced, with a warning at every start) until its allow list is set.
    """
    users = db["users"]
    users.add_column("extensions", str, not_null_default="")
    users.add_column("migrated", int, not_null_default=0)
    db.execute("UPDATE users SET migrated = 1, role = 'admin' WHERE role = 'client'")
    listeners = db["listeners"]
    listeners.add_column("forced", int, not_null_default=0)
    db.execute("UPDATE listeners SET forced = 1 WHERE auth = 'none' AND trim(allow) IN ('*', '')")
    db["parameters"].insert_all(
        [{"name": n, "value": v, "description": d} for n, (v, d) in V6_PARAMETERS.items()],
        ignore=True,
    )


#: Ordered migrations; index + 1 is the schema version it produces.
MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5, _v6]

SCHEMA_VERSION = len(MIGRATIONS)
