"""Board files, their schema and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from tinysplit import cli
from tinysplit.boards import (board_from_dict, board_schema, boards_dir, get_board, list_boards,
                              load_board_file)
from tinysplit.errors import InputError

EXPECTED = {"qemu-mps2-an386", "qemu-mps3-an547", "qemu-lm3s6965evb", "qemu-netduinoplus2", "qemu-riscv32-virt",
            "qemu-xtensa-lx106"}


def _raw(name: str) -> dict:
    return yaml.safe_load((boards_dir() / f"{name}.yaml").read_text())


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(board_schema())


def test_registry_lists_every_board_file():
    names = {b.name for b in list_boards()}
    assert EXPECTED <= names
    assert names == {p.stem for p in boards_dir().glob("*.yaml")}
    assert {b.name for b in list_boards(emulated_only=True)} >= EXPECTED


def test_get_board_returns_frozen_dataclass_with_the_files_values():
    b = get_board("qemu-lm3s6965evb")
    assert (b.family, b.core.cpu, b.uart.kind, b.uart.base) == ("cortex_m", "cortex-m3", "pl011", 0x4000C000)
    assert (b.flash.length, b.ram.length) == (256 * 1024, 64 * 1024)
    assert b.emulator is not None and b.emulator.qemu_machine == "lm3s6965evb"
    with pytest.raises(Exception):
        b.name = "other"  # type: ignore[misc]


def test_netduinoplus2_declares_the_real_chips_ram():
    b = get_board("qemu-netduinoplus2")
    assert b.ram.length == 128 * 1024 and b.region("ccm").length == 64 * 1024
    assert (b.uart.kind, b.uart.base, b.uart_clock_hz) == ("stm32_usart", 0x40011000, 84_000_000)  # USART1 on APB2


def test_nic_only_on_mps_boards():
    assert {b.name for b in list_boards() if b.nic.kind == "lan9118"} == {"qemu-mps2-an386", "qemu-mps3-an547"}
    assert all("udp" in b.transports for b in list_boards() if b.nic.kind == "lan9118")


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(InputError) as e:
        get_board("esp32-s3")
    msg = str(e.value)
    assert "esp32-s3" in msg and all(n in msg for n in EXPECTED)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["uart"].update(base="0x4000C000"), "uart.base"),
    (lambda d: d.pop("clock_hz"), "clock_hz"),
    (lambda d: d["memory"][1].update(kind="sram"), "memory[1].kind"),
    (lambda d: d.update(family="mips"), "family"),
    (lambda d: d["core"].update(cflags=["mcpu=cortex-m3"]), "core.cflags[0]"),
])
def test_bad_board_file_names_file_and_field(tmp_path: Path, mutate, field):
    data = _raw("qemu-lm3s6965evb")
    mutate(data)
    f = tmp_path / "qemu-lm3s6965evb.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as e:
        load_board_file(f)
    assert str(f) in str(e.value) and f"field '{field}'" in str(e.value)


def test_xtensa_board_keeps_the_esp8266_budget_and_needs_its_reset_vector():
    b = get_board("qemu-xtensa-lx106")
    assert (b.family, b.core.cpu, b.core.reset_vector) == ("xtensa", "lx106", 0x50000000)
    assert (b.flash.origin, b.flash.length, b.ram.origin, b.ram.length) == (0x40200000, 1 << 20, 0x3FFE8000, 80 * 1024)
    assert (b.uart.kind, b.exit, b.counter) == ("xtensa_simcall", "xtensa_simcall", "xtensa_icount")
    data = _raw("qemu-xtensa-lx106")
    data["core"].pop("reset_vector")
    with pytest.raises(InputError, match=r"field 'core\.reset_vector'"):
        board_from_dict(data, "x.yaml")
    data = _raw("qemu-xtensa-lx106")
    data["uart"]["base"] = 0x60000000  # the semihosting console has no registers
    with pytest.raises(InputError, match=r"field 'uart\.base'"):
        board_from_dict(data, "x.yaml")


def test_placement_must_name_a_region_of_the_right_kind():
    data = _raw("qemu-mps2-an386")
    data["placement"]["data"] = "nowhere"
    with pytest.raises(InputError, match=r"field 'placement\.data'.*'nowhere'"):
        board_from_dict(data, "x.yaml")
    data["placement"]["data"] = "flash"
    with pytest.raises(InputError, match=r"field 'placement\.data'.*kind 'flash'"):
        board_from_dict(data, "x.yaml")


def test_name_must_match_file_name_and_yaml_must_parse(tmp_path: Path):
    f = tmp_path / "renamed.yaml"
    f.write_text((boards_dir() / "qemu-mps2-an386.yaml").read_text())
    with pytest.raises(InputError, match="field 'name'"):
        load_board_file(f)
    g = tmp_path / "broken.yaml"
    g.write_text("name: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_board_file(g)


def test_boards_command_json(capsys):
    assert cli.main(["boards", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {b["name"] for b in out} == {b.name for b in list_boards()}
    an386 = next(b for b in out if b["name"] == "qemu-mps2-an386")
    assert an386["emulator"] == "mps2-an386" and an386["nic"] == "lan9118"
