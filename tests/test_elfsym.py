"""ELF symbol addresses (tinysplit.firmware.elfsym) against the toolchain's nm, on a program linked for
a Cortex-M; and the QEMU loader arguments of an authenticated build's boot entropy cell."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from codegen_support import have
from tinysplit.errors import InputError
from tinysplit.firmware.elfsym import symbol_address
from tinysplit.firmware.qemu import BOOT_ENTROPY_SYMBOL, boot_entropy_args

SRC = """
#include <stdint.h>
volatile uint32_t ts_boot_entropy __attribute__((section(".noinit")));
int counter = 3;
int hidden[7];
const char greeting[] = "hi";
int main(void) { hidden[1] = counter; return (int)ts_boot_entropy + hidden[1] + greeting[0]; }
"""


@pytest.fixture(scope="module")
def elf(tmp_path_factory) -> Path:
    if not have("arm-none-eabi-gcc"):
        pytest.skip("needs arm-none-eabi-gcc")
    d = tmp_path_factory.mktemp("elf")
    (d / "p.c").write_text(SRC)
    out = d / "p.elf"
    r = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "--specs=nosys.specs", "-O1",
                        str(d / "p.c"), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def nm(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    return {p[2]: int(p[0], 16) for p in rows if len(p) == 3}


def test_addresses_equal_nm(elf):
    table = nm(elf)
    for name in ("counter", "hidden", "greeting", BOOT_ENTROPY_SYMBOL):  # data (a Thumb function has bit 0 set)
        assert symbol_address(elf, name) == table[name], name
    assert symbol_address(elf, "not_there") is None


def test_the_loader_fills_the_entropy_cell(elf):
    args = boot_entropy_args(elf, 0x1234ABCD)
    assert args == ["-device", f"loader,addr=0x{nm(elf)[BOOT_ENTROPY_SYMBOL]:08x},data=0x1234abcd,data-len=4"]
    values = {boot_entropy_args(elf)[1].split("data=")[1] for _ in range(20)}
    assert len(values) == 20 and "0x00000000,data-len=4" not in values  # fresh and non-zero at every launch


def test_a_build_without_the_cell_gets_no_loader(tmp_path, elf):
    data = elf.read_bytes()
    plain = tmp_path / "plain.elf"
    plain.write_bytes(data.replace(BOOT_ENTROPY_SYMBOL.encode(), b"ts_boot_xxxxxxx"))
    assert boot_entropy_args(plain) == [] and boot_entropy_args(tmp_path / "missing.elf") == []


def test_not_an_elf(tmp_path):
    f = tmp_path / "x.elf"
    f.write_bytes(b"\x7fELF\x02" + bytes(60))
    with pytest.raises(InputError, match="32-bit little-endian"):
        symbol_address(f, "a")
