"""``tinysplit rocoin-fleet``: a rocoin bundle's whole fleet in QEMU, devices killed on request, the
labels checked against the reference for the partitions that arrived (``tinysplit.firmware.fleet``).

A ``COMMANDS`` table merged into RoCoIn's verbs (``tinysplit.methods.rocoin.command``); this module
never imports the CLI and its parser imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinysplit.errors import InputError


def add_rocoin_fleet(sub: Any) -> None:
    p = sub.add_parser("rocoin-fleet", help="RoCoIn: run a bundle's fleet in QEMU, kill devices, check the labels",
                       description="Build one firmware per (board, student, transport) of the bundle's groups "
                                   "(method_data.rocoin), give each device its own copy with its wire id, start every "
                                   "device in its own QEMU and one tail server over all of them, broadcast each "
                                   "held-out input to every live device and print, per sample, the label, the "
                                   "partitions that arrived and the devices whose portions were used; per device "
                                   "its frames and whether it was killed. Every label is compared with the "
                                   "reference for exactly the partitions that arrived. Exit status 5 when a sample "
                                   "got no prediction or a label differs.")
    p.add_argument("bundle", metavar="BUNDLE", help="a rocoin bundle directory")
    p.add_argument("--samples", type=int, default=10, metavar="N", help="held-out inputs to send (default 10)")
    p.add_argument("--kill", action="extend", nargs="+", default=[], metavar="ID@SAMPLE",
                   help="end device ID's QEMU (as a crash would) once sample SAMPLE was answered; samples count "
                        "from 1, and 0 kills the device before the first sample (repeatable)")
    p.add_argument("--deadline-ms", type=float, metavar="MS",
                   help="how long the host waits for a sample's missing partitions after its first portion "
                        "(default: the bundle's method_data.rocoin.deadline_ms)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="longest wait for the devices' HELLOs and for a prediction beyond its deadline (default 30)")
    p.add_argument("--keep", metavar="DIR", help="keep the builds and the devices' firmware copies in DIR")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def parse_kills(items: list[str]) -> dict[str, int]:
    from tinysplit.firmware.fleet import parse_kill

    kills: dict[str, int] = {}
    for item in items:
        name, sample = parse_kill(item)
        if name in kills:
            raise InputError(f"--kill names device '{name}' twice")
        kills[name] = sample
    return kills


def run_rocoin_fleet(args: Any) -> int:
    from tinysplit.console import Progress, emit_json
    from tinysplit.firmware.fleet import format_fleet, run_fleet

    r = run_fleet(Path(args.bundle), args.samples, parse_kills(args.kill), args.deadline_ms,
                  workdir=Path(args.keep) if args.keep else None, timeout=args.timeout,
                  progress=Progress(args.quiet))
    emit_json(r) if args.json else print(format_fleet(r))
    return 0 if r["ok"] else 5


COMMANDS = {"rocoin-fleet": (add_rocoin_fleet, run_rocoin_fleet)}
