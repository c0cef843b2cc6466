"""The division and 64-bit multiply routines the xtensa family's projects carry (Debian's lx106
libgcc lacks them): compiled for the host under other names and compared with Python's integers on
edge cases and seeded random operands. (In QEMU they run under every xtensa test; the digits HIL
check's requantization goes through __muldi3 on every output value.)"""

from __future__ import annotations

import ctypes
import random
import shutil
import subprocess

import pytest

from tinysplit.firmware.project import FAMILY_TEMPLATES
from tinysplit.firmware.render import BANNER, render

FUNCS = ("udivsi3", "umodsi3", "divsi3", "umulsidi3", "muldi3", "udivdi3", "umoddi3", "divdi3", "moddi3")
M32, M64 = (1 << 32) - 1, (1 << 64) - 1


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    cc = shutil.which("gcc")
    if cc is None:
        pytest.fail("gcc is not installed: ./setup.sh installs the toolchains the tests need")
    d = tmp_path_factory.mktemp("libgcc")
    src = d / "libgcc_lx106.c"
    src.write_text(render(FAMILY_TEMPLATES["xtensa"]["src/libgcc_lx106.c"], banner=BANNER))
    renames = [f"-D__{f}=ts_test_{f}" for f in FUNCS]  # the host's libgcc keeps its own
    so = d / "libgcc_lx106.so"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *renames,
                    "-o", str(so), str(src)], check=True, capture_output=True)
    lib = ctypes.CDLL(str(so))
    u32, i32, u64, i64 = ctypes.c_uint32, ctypes.c_int32, ctypes.c_uint64, ctypes.c_int64
    sigs = {"udivsi3": (u32, u32), "umodsi3": (u32, u32), "divsi3": (i32, i32), "umulsidi3": (u64, u32),
            "muldi3": (i64, i64), "udivdi3": (u64, u64), "umoddi3": (u64, u64), "divdi3": (i64, i64),
            "moddi3": (i64, i64)}
    for f, (res, arg) in sigs.items():
        fn = getattr(lib, f"ts_test_{f}")
        fn.restype, fn.argtypes = res, [arg, arg]
    return lib


def _operands(bits: int, signed: bool, n: int = 3000) -> list[tuple[int, int]]:
    rng = random.Random(bits * 2 + signed)
    top = 1 << bits
    edges = [1, 2, 3, 7, 10, 0xFFFF, 0x10000, top // 2 - 1, top // 2, top // 2 + 1, top - 2, top - 1]
    vals = edges + [rng.getrandbits(bits) >> rng.randrange(bits) for _ in range(n)]
    pairs = [(a, b) for a in edges for b in edges] + [(rng.choice(vals), rng.choice(vals)) for _ in range(n)]
    if signed:  # the same bit patterns as two's complement values
        pairs = [(a - top if a >= top // 2 else a, b - top if b >= top // 2 else b) for a, b in pairs]
        pairs = [(a, b) for a, b in pairs if not (a == -(top // 2) and b == -1)]  # overflows in C
    return [(a, b) for a, b in pairs if b != 0]


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def test_32_bit_division(lib):
    for a, b in _operands(32, signed=False):
        assert (lib.ts_test_udivsi3(a, b), lib.ts_test_umodsi3(a, b)) == (a // b, a % b), (a, b)
    for a, b in _operands(32, signed=True):
        assert lib.ts_test_divsi3(a, b) == _trunc_div(a, b), (a, b)


def test_64_bit_division(lib):
    for a, b in _operands(64, signed=False):
        assert (lib.ts_test_udivdi3(a, b), lib.ts_test_umoddi3(a, b)) == (a // b, a % b), (a, b)
    for a, b in _operands(64, signed=True):
        q = _trunc_div(a, b)
        assert (lib.ts_test_divdi3(a, b), lib.ts_test_moddi3(a, b)) == (q, a - q * b), (a, b)


def test_multiplication(lib):
    for a, b in _operands(32, signed=False):
        assert lib.ts_test_umulsidi3(a, b) == a * b, (a, b)
    for a, b in _operands(64, signed=True):
        want = (a * b) & M64
        assert lib.ts_test_muldi3(a, b) & M64 == want, (a, b)
    assert lib.ts_test_muldi3(-(1 << 31), 1 << 31) == -(1 << 62)  # a requantization-sized product


def test_division_by_zero_gives_all_ones(lib):
    assert lib.ts_test_udivsi3(5, 0) == M32 and lib.ts_test_umodsi3(5, 0) == 5
    assert lib.ts_test_udivdi3(5, 0) == M64 and lib.ts_test_umoddi3(5, 0) == 5

