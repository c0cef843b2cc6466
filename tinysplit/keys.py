"""Device keys for authenticated frames (docs/wire-protocol.md, "Authenticated frames"): one random
32-byte key per device id, in a JSON file (``schemas/keys.schema.json``) that only its owner may
read. ``tinysplit keys create`` makes and rotates them, ``tinysplit keys list`` shows device ids and
fingerprints (never the keys); the server reads the file (``serve --keys``) and the firmware
generator embeds one device's key. A bundle never holds a key.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tinysplit.errors import InputError
from tinysplit.wire.auth import KEY_SIZE, key_fingerprint

FORMAT = "tinysplit-keys"
VERSION = 1
SCHEMA = "keys.schema.json"
MAX_DEVICE = 0xFFFE  # 0xFFFF is broadcast


@dataclass(frozen=True)
class DeviceKey:
    device: int
    key: bytes
    created: str = ""

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.key)


def _check_private(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read or write."""
    if os.name != "posix":
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"key file '{path}' can be read or written by others (mode {stat.S_IMODE(mode):04o}); "
                         f"it holds secret keys: run 'chmod 600 {path}' (and rotate the keys if others may have "
                         "read them)")


def load_keys(path: str | Path) -> dict[int, DeviceKey]:
    """The keys of a key file by device id; InputError naming what is wrong."""
    from tinysplit.schemacheck import check

    p = Path(path)
    if not p.is_file():
        raise InputError(f"key file '{p}' does not exist; make one with 'tinysplit keys create --file {p} "
                         "--device ID'")
    _check_private(p)
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"key file '{p}' is not valid JSON ({e}); it is written by 'tinysplit keys create'") from None
    check(SCHEMA, data, p.name)
    out: dict[int, DeviceKey] = {}
    for i, k in enumerate(data["keys"]):
        if k["device"] in out:
            raise InputError(f"{p.name}: field 'keys[{i}].device': device {k['device']} has two keys; keep one")
        out[k["device"]] = DeviceKey(k["device"], bytes.fromhex(k["key"]), k.get("created", ""))
    return out


def _write(path: Path, keys: dict[int, DeviceKey]) -> None:
    from tinysplit.files import write_atomic  # a temporary file of mode 0600, then a rename

    doc = {"format": FORMAT, "version": VERSION,
           "keys": [{"device": d, "key": k.key.hex(), **({"created": k.created} if k.created else {})}
                    for d, k in sorted(keys.items())]}
    write_atomic(path, json.dumps(doc, indent=1) + "\n")
    os.chmod(path, 0o600)


def create_keys(path: str | Path, devices: Iterable[int], rotate: bool = False) -> list[DeviceKey]:
    """New random keys for ``devices`` in the key file (created with mode 0600 if missing). A device
    that has a key keeps it unless ``rotate``."""
    p = Path(path)
    devs = list(devices)
    if not devs:
        raise InputError("name at least one device id (--device N)")
    for d in devs:
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= MAX_DEVICE:
            raise InputError(f"device id {d!r} is not 0..{MAX_DEVICE} (0xFFFF is broadcast)")
    if len(set(devs)) != len(devs):
        raise InputError(f"device ids repeat: {sorted({d for d in devs if devs.count(d) > 1})}")
    if p.exists() and not p.is_file():
        raise InputError(f"'{p}' is not a file")
    if not p.parent.is_dir():
        raise InputError(f"the directory of '{p}' does not exist")
    keys = load_keys(p) if p.exists() else {}
    have = [d for d in devs if d in keys]
    if have and not rotate:
        raise InputError(f"device(s) {', '.join(map(str, have))} already have a key in '{p}'; give --rotate to "
                         "replace them (their firmware must then be rebuilt)")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    made = [DeviceKey(d, secrets.token_bytes(KEY_SIZE), now) for d in devs]
    keys.update({k.device: k for k in made})
    _write(p, keys)
    return made
