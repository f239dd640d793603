"""`python -m winlab serve | state | fault | reboot`: run a fleet of emulated hosts and talk to it.

serve   --hosts N --inventory FILE [--seed S] [--lab DIR] [--reset] [--store-files K] [--time-scale F]
state   --inventory FILE --host NAME
fault   --inventory FILE --host NAME (--latency S | --auth-failure | --timeout | --drop | --deny PATH |
        --gpo-revert RIGHT [--gpo-in S] | --down | --up | --clear)
reboot  --inventory FILE --host NAME
smtp    --inventory FILE --host NAME [--relay closed|open] [--auth-mode secure_only|always|never]
        [--certificate-days N|none] [--certificate-name NAME]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from winlab.control import ControlClient, ControlError, ControlServer
from winlab.lab import Lab
from winlab.persist import write_private_json


def _lab_dir_of(inventory: Path) -> Path:
    try:
        return Path(json.loads(inventory.read_text(encoding="utf-8"))["lab_dir"])
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"cannot read the inventory {inventory}: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    lab_dir: Path = args.lab or args.inventory.parent
    if args.reset and (lab_dir / "state").exists():
        shutil.rmtree(lab_dir / "state")
    lab = Lab(
        hosts=args.hosts,
        seed=args.seed,
        store_files=args.store_files,
        lab_dir=lab_dir,
        time_scale=args.time_scale,
        winrm_ports=(5985, 5986),
        persist=True,
        reset=args.reset,
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    lab.start()
    control = ControlServer(lab, lab_dir)
    try:
        control.start()
        args.inventory.parent.mkdir(parents=True, exist_ok=True)
        write_private_json(args.inventory, lab.inventory())
        print(f"winlab: {len(lab.hosts)} hosts up; inventory {args.inventory}; Ctrl-C stops", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        control.stop()
        lab.stop()
        print("winlab: stopped", flush=True)
    return 0


def state(args: argparse.Namespace) -> int:
    try:
        data = ControlClient(_lab_dir_of(args.inventory)).state(args.host)
    except ControlError as exc:
        print(f"winlab: {exc}", file=sys.stderr)
        return 1
    json.dump(data, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def fault(args: argparse.Namespace) -> int:
    body: dict[str, object] = {}
    if args.clear:
        body["clear"] = True
    if args.latency is not None:
        body["latency"] = args.latency
    if args.auth_failure:
        body["auth_failure"] = True
    if args.timeout:
        body["timeout"] = True
    if args.drop:
        body["drop"] = args.drop
    if args.deny:
        body["deny"] = args.deny
    if args.gpo_revert:
        body["gpo_revert"] = args.gpo_revert
        body["gpo_refresh_in"] = args.gpo_in
    if args.down:
        body["down"] = True
    if args.up:
        body["down"] = False
    if not body:
        print("winlab: name a fault (see --help)", file=sys.stderr)
        return 2
    try:
        ControlClient(_lab_dir_of(args.inventory)).fault(args.host, **body)
    except ControlError as exc:
        print(f"winlab: {exc}", file=sys.stderr)
        return 1
    return 0


def reboot(args: argparse.Namespace) -> int:
    try:
        data = ControlClient(_lab_dir_of(args.inventory)).reboot(args.host)
    except ControlError as exc:
        print(f"winlab: {exc}", file=sys.stderr)
        return 1
    json.dump(data.get("boot", data), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def smtp(args: argparse.Namespace) -> int:
    body: dict[str, object] = {}
    if args.relay is not None:
        body["relay"] = args.relay
    if args.auth_mode is not None:
        body["auth_mode"] = args.auth_mode
    if args.certificate_days is not None:
        body["certificate_days"] = None if args.certificate_days == "none" else int(args.certificate_days)
    if args.certificate_name is not None:
        body["certificate_name"] = args.certificate_name
    try:
        data = ControlClient(_lab_dir_of(args.inventory)).smtp(args.host, **body)
    except (ControlError, ValueError) as exc:
        print(f"winlab: {exc}", file=sys.stderr)
        return 1
    json.dump(data.get("smtp", data), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winlab", description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("serve", help="run a fleet until Ctrl-C / SIGTERM")
    p.add_argument("--hosts", type=int, required=True)
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lab", type=Path, default=None, help="lab folder (default: the inventory's folder)")
    p.add_argument("--reset", action="store_true", help="forget the saved host states")
    p.add_argument("--store-files", type=int, default=30)
    p.add_argument("--time-scale", type=float, default=1.0, help="real seconds per modelled second of work")
    p.set_defaults(func=serve)
    p = commands.add_parser("state", help="print a host's whole state as JSON")
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--host", required=True)
    p.set_defaults(func=state)
    p = commands.add_parser("fault", help="inject a fault into one host")
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--latency", type=float, default=None, help="seconds added to every request")
    p.add_argument("--auth-failure", action="store_true", help="every new login gets 401")
    p.add_argument("--timeout", action="store_true", help="every Receive times out")
    p.add_argument("--drop", type=int, nargs="?", const=1, default=0, help="cut the next N shell requests")
    p.add_argument("--deny", metavar="PATH", help="access denied on this file, folder or HKLM key")
    p.add_argument("--gpo-revert", metavar="RIGHT", help="a GPO resets RIGHT to its default holders")
    p.add_argument("--gpo-in", type=float, default=0.5, help="model seconds until that GPO's next refresh")
    p.add_argument("--down", action="store_true", help="host down (listeners closed)")
    p.add_argument("--up", action="store_true", help="host up again")
    p.add_argument("--clear", action="store_true", help="remove every fault")
    p.set_defaults(func=fault)
    p = commands.add_parser("reboot", help="restart one host's Windows (services stop, Auto ones start as at boot)")
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--host", required=True)
    p.set_defaults(func=reboot)
    p = commands.add_parser("smtp", help="change one host's SMTP relay policy, AUTH mode or certificate")
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--relay", choices=("closed", "open"))
    p.add_argument("--auth-mode", choices=("secure_only", "always", "never"))
    p.add_argument("--certificate-days", metavar="N|none", help="days to expiry (negative: expired); none: no cert")
    p.add_argument("--certificate-name", metavar="NAME", help="issue the certificate to this name only")
    p.set_defaults(func=smtp)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="winlab: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
