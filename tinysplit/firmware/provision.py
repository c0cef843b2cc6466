"""Per-device copies of one firmware: the bytes of a named object in a built ELF, replaced.

A method app keeps its per-device values (a fleet device's wire id) in one const volatile object in
flash; one build then serves every device of that (board, model, transport), and each device runs
a copy of the ELF with that object's bytes changed, as a provisioning step at flashing time would.
Only the file's contents of the object change: sizes, sections and every other byte stay as built.

ELF32 little-endian (every board here): the symbol table gives the object's address and section,
the section its offset in the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinysplit.errors import InputError
from tinysplit.files import write_atomic

SHT_SYMTAB = 2
SHT_NOBITS = 8
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00


@dataclass(frozen=True)
class ElfObject:
    name: str
    address: int
    size: int
    offset: int  # where its bytes lie in the file


def _sections(data: bytes, elf: Path) -> list[tuple[int, ...]]:
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise InputError(f"'{elf}' is not a 32-bit little-endian ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x2E)
    if shoff == 0 or shoff + shnum * shentsize > len(data):
        raise InputError(f"'{elf}' has no section headers (a stripped or truncated file)")
    # name, type, flags, addr, offset, size, link, info, addralign, entsize
    return [struct.unpack_from("<10I", data, shoff + i * shentsize) for i in range(shnum)]


def find_object(elf: str | Path, name: str) -> ElfObject:
    """The object ``name`` of a built ELF (InputError if the file has no such symbol with contents)."""
    elf = Path(elf)
    data = elf.read_bytes()
    sections = _sections(data, elf)
    for sec in sections:
        if sec[1] != SHT_SYMTAB:
            continue
        strtab = sections[sec[6]]
        for off in range(sec[4], sec[4] + sec[5], 16):
            st_name, value, size, _info, _other, shndx = struct.unpack_from("<IIIBBH", data, off)
            start = strtab[4] + st_name
            if data[start:data.index(b"\0", start)].decode(errors="replace") != name:
                continue
            if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE or shndx >= len(sections):
                break
            target = sections[shndx]
            if target[1] == SHT_NOBITS or not target[3] <= value <= value + size <= target[3] + target[5]:
                raise InputError(f"'{elf}': '{name}' has no bytes in the file (it is not an initialized object)")
            return ElfObject(name, value, size, target[4] + value - target[3])
    raise InputError(f"'{elf}' has no object '{name}' (not built from this app, or stripped)")


def patch_symbol(elf: str | Path, out: str | Path, name: str, size: int, patch: Callable[[bytes], bytes]) -> Path:
    """Write to ``out`` a copy of ``elf`` whose object ``name`` (``size`` bytes) holds ``patch(old
    bytes)``; ``patch`` may raise to refuse (a firmware of another build). Returns ``out``."""
    obj = find_object(elf, name)
    if obj.size != size:
        raise InputError(f"'{elf}': '{name}' is {obj.size} bytes, expected {size} (a firmware of another version)")
    data = bytearray(Path(elf).read_bytes())
    new = patch(bytes(data[obj.offset:obj.offset + size]))
    if len(new) != size:
        raise ValueError(f"patch of '{name}' gave {len(new)} bytes, not {size}")
    data[obj.offset:obj.offset + size] = new
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, bytes(data))
