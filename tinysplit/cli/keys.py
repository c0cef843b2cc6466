"""``tinysplit keys``: make, rotate and list the device keys of authenticated frames."""

from __future__ import annotations

from pathlib import Path

from tinysplit.console import emit_json


def add_keys(sub) -> None:
    p = sub.add_parser("keys", help="make and list device keys for authenticated frames",
                       description="Each device has its own random 32-byte key (docs/wire-protocol.md, "
                                   "'Authenticated frames'). The key file is JSON, readable by its owner only "
                                   "(mode 0600); the server (serve --keys) and the firmware generator read it. "
                                   "Keys are never printed: 'list' shows fingerprints.")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = ks.add_parser("create", help="new keys for devices (the file is created if missing)")
    c.add_argument("--file", required=True, metavar="KEYS.json", help="the key file")
    c.add_argument("--device", action="append", type=_device, required=True, metavar="ID",
                   help="a device id, 0..65534 (repeat for several)")
    c.add_argument("--rotate", action="store_true", help="replace the keys of devices that have one")
    li = ks.add_parser("list", help="device ids and key fingerprints")
    li.add_argument("--file", required=True, metavar="KEYS.json", help="the key file")
    li.add_argument("--json", action="store_true", help="print JSON")


def _device(text: str) -> int:
    import argparse

    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a device id is a whole number, got '{text}'") from None


def run_keys(args) -> int:
    from tinysplit.keys import create_keys, load_keys

    if args.keys_command == "create":
        made = create_keys(Path(args.file), args.device, rotate=args.rotate)
        for k in made:
            print(f"device {k.device}: new key, fingerprint {k.fingerprint}")
        print(f"keys: {args.file} (mode 0600); rebuild the firmware of these devices to embed them")
        return 0
    keys = load_keys(Path(args.file))
    if args.json:
        emit_json({"file": str(args.file), "keys": [{"device": d, "fingerprint": k.fingerprint, "created": k.created}
                                                     for d, k in sorted(keys.items())]})
        return 0
    print(f"{len(keys)} device key(s) in {args.file}")
    for d, k in sorted(keys.items()):
        print(f"  device {d:5d}  fingerprint {k.fingerprint}  created {k.created or '-'}")
    return 0


COMMANDS = {"keys": (add_keys, run_keys)}
