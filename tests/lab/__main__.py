"""`python -m tests.lab up [--phones auto|none] | down | status`."""

from __future__ import annotations

import argparse
import sys

from tests.lab import chroot
from tests.lab.harness import (
    FLAVOURS, LAB_DIR, SECOND_SHIFT, Lab, LabConfig, LabError, down_running,
)


def _describe(c) -> str:
    phones = ", ".join(f"{e} -> sip:{e}@127.0.0.1:{p}" for e, p in c.phones.items())
    return "\n".join([
        f"lab is up, {c.flavour} flavour ({LAB_DIR}/lab.json has every address and credential)",
        f"  Asterisk 22   SIP udp 127.0.0.1:{c.sip_port}, ARI {c.ari_url} (user {c.ari_user}),"
        f" AMI 127.0.0.1:{c.ami_port} (user {c.ami_user})",
        f"                console: chroot {c.chroot} asterisk -r",
        f"  agents        {phones}  (phones: {c.phones_mode})",
        f"  queue         {c.queue_number} -> {c.queue}, IVR {c.ivr_number}; outside numbers"
        f" 9+digits -> trunk"
        f" sip:127.0.0.1:{c.trunk_port}",
        f"  astcti        WebSocket ws://127.0.0.1:{c.ws_port}/  REST http://127.0.0.1:{c.rest_port}/"
        f"  TCP 127.0.0.1:{c.tcp_port}",
        f"                login: user {c.astcti_user!r} password {c.astcti_password!r}",
        f"                admin: astcti-shell --socket {c.admin_socket}; log {c.astcti_log}",
        *([f"  second PBX    agents 201-204 on SIP udp 127.0.0.1:{c.sip_port + SECOND_SHIFT},"
           f" ARI 127.0.0.1:{c.ari_port + SECOND_SHIFT}, linked as acti_tlink_02 (console:"
           f" chroot {c.lab_dir}/pbx2/chroot asterisk -r)"] if c.pbxs == 2 else []),
        "  stop it with `make lab-down`",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Asterisk, astcti and the phones")
    up.add_argument("--phones", choices=["auto", "none"], default="auto")
    up.add_argument("--pbxs", type=int, choices=[1, 2], default=1,
                    help="2: a second Asterisk (agents 2XX) linked as acti_tlink_02")
    up.add_argument("--flavour", choices=FLAVOURS, default=None,
                    help="asterisk (astcti's dialplan) or freepbx (FreePBX 17's dialplan);"
                         " default: ASTCTI_LAB_FLAVOUR or asterisk")
    sub.add_parser("down", help="stop everything the lab started")
    sub.add_parser("status", help="say whether a lab runs")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            config = Lab(LabConfig.from_env(args.flavour)).up(phones=args.phones, pbxs=args.pbxs)
            print(_describe(config))
        elif args.command == "down":
            print("lab stopped" if down_running() else "no lab was running")
        else:
            running = Lab.running()
            if running is None:
                print("no lab is running")
                return 3
            print(_describe(running))
    except (LabError, chroot.ChrootError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
