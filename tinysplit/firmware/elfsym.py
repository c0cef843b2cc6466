"""Symbol addresses in a 32-bit little-endian ELF file (what the emulator needs to load a value into
a variable at boot, e.g. the boot entropy cell of authenticated builds). Reads the section headers,
``.symtab`` and its string table; nothing else of the file is trusted."""

from __future__ import annotations

import struct
from pathlib import Path

from tinysplit.errors import InputError

_EHDR = struct.Struct("<16sHHIIIIIHHHHHH")
_SHDR = struct.Struct("<IIIIIIIIII")
_SYM = struct.Struct("<IIIBBH")
SHT_SYMTAB = 2


def symbol_address(elf: str | Path, name: str) -> int | None:
    """The value (address) of the global or local symbol ``name``, or None when the ELF has none."""
    data = Path(elf).read_bytes()
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise InputError(f"'{elf}' is not a 32-bit little-endian ELF file")
    *_, shoff, _flags, _ehsize, _phentsize, _phnum, shentsize, shnum, _shstrndx = _EHDR.unpack_from(data, 0)
    if shentsize != _SHDR.size or shoff + shnum * shentsize > len(data):
        raise InputError(f"'{elf}': its section headers do not fit the file")
    sections = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)]
    want = name.encode()
    for _, stype, _, _, off, size, link, _, _, entsize in sections:
        if stype != SHT_SYMTAB or entsize != _SYM.size or link >= shnum:
            continue
        str_off, str_size = sections[link][4], sections[link][5]
        if off + size > len(data) or str_off + str_size > len(data):
            raise InputError(f"'{elf}': its symbol table does not fit the file")
        for k in range(size // entsize):
            st_name, value, _, _, _, shndx = _SYM.unpack_from(data, off + k * entsize)
            if shndx == 0 or st_name >= str_size:
                continue
            end = data.find(b"\0", str_off + st_name, str_off + str_size)
            if end >= 0 and data[str_off + st_name:end] == want:
                return value
    return None
