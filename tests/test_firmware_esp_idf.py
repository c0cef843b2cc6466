"""ESP-IDF projects for the ESP32 family (esp32-devkitc, esp32s3-devkitc, esp32c3-devkitm).

No ESP-IDF, no Xtensa LX6/LX7 compiler and no ESP32 emulator exist here, so what is checked is:
the generated tree against ESP-IDF's conventions (project CMake, idf_component_register, the
component manifest validated by the idf-component-manager package, Kconfig symbols the C uses,
sdkconfig.defaults), and the portable C of the project (model, kernels, codec, runtime, app) compiled
with -Wall -Wextra -Werror for the host, for RV32IMC (the ESP32-C3's ISA) and, where the compiler is
installed, for Xtensa LX106 (the ESP8266's core: the ESP32's ISA family, not its LX6/LX7 cores).
The ESP-IDF glue (uart.c, net.c, counter.c, exit.c, board_io.c, main/main.c) needs ESP-IDF's headers
and is not compiled here."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import yaml

from firmware_support import write_fake_model
from opcases import conv_case
from tinysplit import cli
from tinysplit.boards import board_from_dict, boards_dir, get_board, list_boards
from tinysplit.errors import InputError
from tinysplit.firmware.apps.nair import NairAppConfig
from tinysplit.firmware.apps.rebel import RebelAppConfig
from tinysplit.firmware.apps.rocoin import RocoinAppConfig
from tinysplit.firmware.build import build_project
from tinysplit.firmware.generate import model_project
from tinysplit.firmware.project import LinkSettings, render_project

ESP = ["esp32-devkitc", "esp32s3-devkitc", "esp32c3-devkitm"]
LINK = LinkSettings("lab-net", "correct horse", "192.168.1.20")
PORTABLE = ("main.c", "ts_device.c", "ts_wire.c")  # + the model's sources; the rest is ESP-IDF glue
GLUE = ("uart.c", "net.c", "counter.c", "exit.c", "board_io.c")


def _cfgs(udp: bool) -> dict:
    t, port = ("udp", 5611) if udp else ("uart", 5600)
    return {
        "nair": NairAppConfig(0x1234ABCD, 7, 4, 4, 96, 6, 16, t, port),
        "rebel": RebelAppConfig(bundle_id=0x1234ABCD, device_id=7, latent_dim=12, classes=10, default_q_t=100,
                                transport=t, udp_port=port),
        "rocoin": RocoinAppConfig(bundle_id=0x1234ABCD, device_id=3, partition=1, partitions_total=3,
                                  portion_bytes=30, transport=t, udp_port=port, input_bytes=100),
    }


OUT = {"nair": 4 * 4 * 96, "rebel": 22, "rocoin": 30}


@lru_cache(maxsize=None)
def _model(root: str, out_bytes: int):
    return write_fake_model(Path(root) / f"m{out_bytes}", in_bytes=100, out_bytes=out_bytes,
                            arena_bytes=100 + out_bytes)


def test_the_three_esp_boards_are_esp_idf_hardware_boards():
    for name in ESP:
        b = get_board(name)
        assert b.family == "esp_idf" and b.emulator is None and b.idf is not None
        assert {r.kind for r in b.memory} == {"flash", "iram", "ram"} and b.ram.name == "dram"
        assert 0 < b.ram.available < b.ram.length and b.idf.wifi_reserved > 0
    assert get_board("esp32c3-devkitm").idf.target == "esp32c3" and "-mabi=ilp32" in get_board("esp32c3-devkitm").core.cflags
    assert {b.name for b in list_boards() if b.family == "esp_idf"} == set(ESP)


@pytest.mark.parametrize("board_name", ESP)
@pytest.mark.parametrize("app", ["nair", "rebel", "rocoin"])
@pytest.mark.parametrize("udp", [False, True])
def test_generates_an_esp_idf_project_that_follows_its_conventions(tmp_path: Path, board_name: str, app: str,
                                                                   udp: bool):
    board = get_board(board_name)
    cfg = _cfgs(udp)[app]
    project = render_project(board, _model(str(tmp_path), OUT[app]), tmp_path / "p", app=app, app_config=cfg,
                             link=LINK if udp else None)
    d = project.dir
    comp = d / "components" / "tinysplit"
    top = (d / "CMakeLists.txt").read_text()
    # the project CMake ESP-IDF documents: minimum version, project.cmake from IDF_PATH, then project()
    lines = [x for x in top.splitlines() if x and not x.startswith("#")]
    assert lines[0].startswith("cmake_minimum_required(VERSION 3.16)")
    assert lines[1] == "include($ENV{IDF_PATH}/tools/cmake/project.cmake)" and lines[2].startswith("project(")
    # components: idf_component_register with every source that exists, and nothing else compiled
    ccmake = (comp / "CMakeLists.txt").read_text()
    srcs = re.findall(r'"(src/[^"]+\.c)"', ccmake)
    assert sorted(srcs) == sorted(str(p.relative_to(comp)) for p in comp.rglob("*.c"))
    assert "idf_component_register(SRCS" in ccmake and 'INCLUDE_DIRS "src" "src/model"' in ccmake
    requires = re.search(r"PRIV_REQUIRES ([^)]*)\)", ccmake).group(1).split()
    assert "driver" in requires and (("esp_wifi" in requires and "lwip" in requires) == udp)
    main_cmake = (d / "main" / "CMakeLists.txt").read_text()
    assert re.search(r'idf_component_register\(SRCS "main.c"\s+INCLUDE_DIRS "."\s+PRIV_REQUIRES tinysplit\)', main_cmake)
    assert re.search(r"^void app_main\(void\)$", (d / "main" / "main.c").read_text(), re.M)
    # the app's main() is renamed for app_main to call
    assert 'COMPILE_DEFINITIONS "main=ts_app_main"' in ccmake and "int main(void)" in (comp / "src" / "main.c").read_text()
    # every CONFIG_TS_* the C reads is a Kconfig symbol of the menu; sdkconfig.defaults sets only known ones
    kconfig = (d / "main" / "Kconfig.projbuild").read_text()
    symbols = set(re.findall(r"^\s+config (TS_\w+)$", kconfig, re.M))
    used = {m for p in comp.rglob("*.c") for m in re.findall(r"CONFIG_(TS_\w+)", p.read_text())}
    assert used <= symbols and {"TS_UART_NUM", "TS_UART_BAUD"} <= used and ("TS_WIFI_SSID" in used) == udp
    assert kconfig.count("menu \"tinysplit\"") == 1 and kconfig.rstrip().endswith("endmenu")
    defaults = dict(x.split("=", 1) for x in (d / "sdkconfig.defaults").read_text().splitlines()
                    if x and not x.startswith("#"))
    assert defaults["CONFIG_IDF_TARGET"] == f'"{board.idf.target}"'
    assert defaults["CONFIG_ESP_MAIN_TASK_STACK_SIZE"] == str(board.stack_bytes)
    assert defaults[f"CONFIG_ESP_DEFAULT_CPU_FREQ_MHZ_{board.clock_hz // 1_000_000}"] == "y"
    assert {k[len("CONFIG_"):] for k in defaults if k.startswith("CONFIG_TS_")} <= symbols
    if udp:
        assert defaults["CONFIG_TS_WIFI_SSID"] == '"lab-net"' and defaults["CONFIG_TS_HOST_ADDR"] == '"192.168.1.20"'
        assert defaults["CONFIG_TS_HOST_PORT"] == "5611"
        assert stat.S_IMODE((d / "sdkconfig.defaults").stat().st_mode) == 0o600  # holds the password
        assert "correct horse" not in kconfig + (d / "project.json").read_text()
    else:
        assert "CONFIG_TS_WIFI_SSID" not in defaults
    manifest = yaml.safe_load((comp / "idf_component.yml").read_text())
    assert manifest["targets"] == [board.idf.target] and manifest["dependencies"]["idf"].startswith(">=5")
    meta = json.loads((d / "project.json").read_text())
    assert meta["builder"] == "idf.py" and meta["idf"]["target"] == board.idf.target
    for p in d.rglob("*"):
        if p.is_file() and p.suffix in (".c", ".h", ".txt", ".yml", ".projbuild", ".defaults"):
            assert "{{" not in p.read_text() and "{%" not in p.read_text(), p
    assert not (d / "linker.ld").exists() and not (d / "toolchain.cmake").exists() and not (d / "src").exists()


def test_component_manifest_validates_with_the_idf_component_manager(tmp_path: Path):
    """idf_component.yml against the component manager's own manifest model (the package ESP-IDF runs)."""
    tools = pytest.importorskip("idf_component_tools.manifest", reason="pip install idf-component-manager")
    project = render_project(get_board("esp32s3-devkitc"), _model(str(tmp_path), OUT["nair"]), tmp_path / "p",
                             app="nair", app_config=_cfgs(False)["nair"])
    data = yaml.safe_load((project.dir / "components" / "tinysplit" / "idf_component.yml").read_text())
    import jsonschema

    jsonschema.validate(data, tools.MANIFEST_JSON_SCHEMA)
    manifest = tools.Manifest.fromdict(data)
    assert manifest.targets == ["esp32s3"] and [r.name for r in manifest.requirements] == ["idf"]
    with pytest.raises(Exception, match="Invalid version specification"):  # the check can fail
        tools.Manifest.fromdict({**data, "dependencies": {"idf": {"version": "five"}}})


def _compilers() -> list[tuple[str, list[str]]]:
    out = [("gcc", [])]
    if shutil.which("riscv64-unknown-elf-gcc"):
        out.append(("riscv64-unknown-elf-gcc", ["-march=rv32imc", "-mabi=ilp32", "--specs=picolibc.specs"]))
        out.append(("riscv64-unknown-elf-gcc", [*get_board("esp32c3-devkitm").core.cflags, "--specs=picolibc.specs"]))
    if shutil.which("xtensa-lx106-elf-gcc"):
        out.append(("xtensa-lx106-elf-gcc", ["-mlongcalls"]))
    return out


@pytest.mark.parametrize("board_name", ESP)
def test_portable_c_of_the_project_compiles_with_werror(tmp_path: Path, board_name: str):
    """A real generated model (a conv, so the kernels are in) with the nair app over UDP: the model,
    kernels, codec, runtime and app compile warning-free for the host, RV32IMC and Xtensa LX106."""
    case = conv_case(np.random.default_rng(15), 0, False)
    h, w, c = case_out = None, None, None  # filled from the generated sources
    from tinysplit.exporter.codegen import generate_model_sources

    src = generate_model_sources(case.tflite, "conv", tmp_path / "gen")
    h, w, c = src.output.shape[-3:]
    cfg = NairAppConfig(0x1234ABCD, 2, h, w, c, 1, 1, "udp", 5600)
    project, sources = model_project(board_name, case.tflite, "conv", tmp_path / "p", "nair", cfg, link=LINK)
    srcdir = project.dir / "components" / "tinysplit" / "src"
    files = [srcdir / f for f in PORTABLE] + [srcdir / "model" / Path(s).name for s in sources.sources]
    assert (srcdir / "model" / "ts_kernels.c") in files
    assert sorted(p.name for p in srcdir.glob("*.c")) == sorted((*PORTABLE, *GLUE))
    for cc, flags in _compilers():
        for f in files:
            r = subprocess.run([cc, *flags, "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror", "-Dmain=ts_app_main",
                                "-I", str(srcdir), "-I", str(srcdir / "model"), "-c", str(f), "-o",
                                str(tmp_path / (f.stem + ".o"))], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"{cc} {' '.join(flags)} {f.name}:\n{r.stderr}"
    assert len(_compilers()) >= 3, "the RISC-V cross compiler must be installed (docs/esp32.md)"


# --- bad input ----------------------------------------------------------------------------------------

def test_udp_without_wifi_settings_is_a_clear_error(tmp_path: Path):
    board, m, cfg = get_board("esp32c3-devkitm"), _model(str(tmp_path), OUT["nair"]), _cfgs(True)["nair"]
    with pytest.raises(InputError, match=r"goes over Wi-Fi: give the Wi-Fi network \(--wifi-ssid\) and the host's "
                                         r"IPv4 address \(--host\)"):
        render_project(board, m, tmp_path / "a", app="nair", app_config=cfg)
    with pytest.raises(InputError, match=r"give the host's IPv4 address \(--host\)"):
        render_project(board, m, tmp_path / "b", app="nair", app_config=cfg, link=LinkSettings("lab"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing half-written


@pytest.mark.parametrize("link, match", [
    (LinkSettings("lab", "short", "192.168.1.20"), "8..63 printable ASCII"),
    (LinkSettings("x" * 33, "", "192.168.1.20"), "1..32 bytes"),
    (LinkSettings("lab", "", "my-laptop.local"), "not an IPv4 address"),
    (LinkSettings("lab", "", "192.168.1.20", uart_port=2), "UART 2 does not exist on esp32c3"),
    (LinkSettings("lab", "", "192.168.1.20", uart_baud=300), "baud rate 300"),
])
def test_bad_link_settings_name_what_is_wrong(tmp_path: Path, link: LinkSettings, match: str):
    with pytest.raises(InputError, match=match):
        render_project(get_board("esp32c3-devkitm"), _model(str(tmp_path), OUT["nair"]), tmp_path / "p", app="nair",
                       app_config=_cfgs(True)["nair"], link=link)


def test_link_settings_only_where_they_apply(tmp_path: Path):
    m = _model(str(tmp_path), OUT["nair"])
    with pytest.raises(InputError, match="takes no Wi-Fi, host or UART settings.*esp32-devkitc"):
        render_project(get_board("qemu-mps2-an386"), m, tmp_path / "a", app="nair", app_config=_cfgs(True)["nair"],
                       link=LINK)
    with pytest.raises(InputError, match="are for --transport udp"):
        render_project(get_board("esp32-devkitc"), m, tmp_path / "b", app="nair", app_config=_cfgs(False)["nair"],
                       link=LINK)


def test_fit_check_uses_the_dram_esp_idf_leaves_and_wifi_takes(tmp_path: Path):
    board = get_board("esp32-devkitc")
    # an arena that fits the DRAM ESP-IDF leaves over the UART, but not once Wi-Fi takes its share
    arena = board.ram.available - board.stack_bytes - 5 * 1024 - board.idf.wifi_reserved // 2
    m = write_fake_model(tmp_path / "big", in_bytes=100, out_bytes=OUT["nair"], arena_bytes=arena)
    render_project(board, m, tmp_path / "uart", app="nair", app_config=_cfgs(False)["nair"])
    with pytest.raises(InputError, match=r"region 'dram' has [\d,]+ bytes available \(after ESP-IDF's own "
                                         r"32,768 and Wi-Fi/lwIP's 32,768\)"):
        render_project(board, m, tmp_path / "udp", app="nair", app_config=_cfgs(True)["nair"], link=LINK)


def test_tinysplit_build_points_to_idf_py(tmp_path: Path):
    project = render_project(get_board("esp32-devkitc"), _model(str(tmp_path), OUT["nair"]), tmp_path / "p",
                             app="nair", app_config=_cfgs(False)["nair"])
    with pytest.raises(InputError, match=r"ESP-IDF project.*idf.py set-target esp32 && idf.py build"):
        build_project(project.dir)


def test_cli_udp_on_esp_without_a_host_exits_2(tmp_path: Path, capsys):
    m = conv_case(np.random.default_rng(15), 0, False)
    f = tmp_path / "m.tflite"
    f.write_bytes(m.tflite)
    rc = cli.main(["firmware", "--tflite", str(f), "--board", "esp32-devkitc", "--out", str(tmp_path / "p"),
                   "--wifi-ssid", "lab"])
    assert rc == 2 and "are for --transport udp" in capsys.readouterr().err
    rc = cli.main(["firmware", "--tflite", str(f), "--board", "esp32-devkitc", "--out", str(tmp_path / "q"),
                   "--wifi-password-env", "TS_TEST_NO_SUCH_VARIABLE"])
    assert rc == 2 and "TS_TEST_NO_SUCH_VARIABLE is not set" in capsys.readouterr().err
    rc = cli.main(["firmware", "--tflite", str(f), "--board", "esp32c3-devkitm", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 0 and "idf.py set-target esp32c3 && idf.py build flash" in out
    assert (tmp_path / "r" / "components" / "tinysplit" / "src" / "model" / "ts_kernels.c").is_file()


def _raw(name: str) -> dict:
    return yaml.safe_load((boards_dir() / f"{name}.yaml").read_text())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("idf"), "idf"),
    (lambda d: d["uart"].pop("port"), "uart.port"),
    (lambda d: d["idf"].update(target="esp8266"), "idf.target"),
    (lambda d: d["memory"][2].update(reserved=0x60000), "memory[2].reserved"),
    (lambda d: d["uart"].update(port=2), "uart.port"),
])
def test_bad_esp_board_file_names_the_field(mutate, field: str):
    data = _raw("esp32c3-devkitm")
    mutate(data)
    with pytest.raises(InputError, match=re.escape(f"field '{field}'")):
        board_from_dict(data, "esp32c3-devkitm.yaml")


def test_idf_object_only_on_esp_idf_boards():
    data = _raw("qemu-riscv32-virt")
    data["idf"] = {"target": "esp32c3", "uarts": 2, "wifi_reserved": 0}
    with pytest.raises(InputError, match="esp32c3-devkitm.yaml|qemu-riscv32-virt.yaml"):
        board_from_dict(data, "qemu-riscv32-virt.yaml")
