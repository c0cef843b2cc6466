"""``tinysplit adaptive-plan``: the planner's inputs from a study and its bundle (profile.py), the device
chain as data (chain.py and its schema), and the command end to end on a study directory made here: a
bundle whose head is the flatbuffer-built skipnet (tests/skipnet.py: 3 skippable blocks, weights and
activations worked out by hand below) and a study dict with hand-made instructions and accuracies.
No TensorFlow, no torch; a few seconds. The slow test runs the real digits study first."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from codegen_support import have
from conftest import REPO, run_cli
from skipnet import skipnet
from tinysplit.cli import main
from tinysplit.errors import InputError
from tinysplit.methods.adaptive_resnet.chain import (SHIPPED, chain_from_dict, load_devices, shipped_devices)
from tinysplit.methods.adaptive_resnet.command import best_fixed_mask
from tinysplit.methods.adaptive_resnet.planner import Demand, InfeasibleError, plan
from tinysplit.methods.adaptive_resnet.profile import (accuracy_model, block_costs, instruction_costs, profile_from,
                                                       profile_from_parts)

PLAN_SCHEMA = json.loads((REPO / "tinysplit/schemas/adaptive_plan.schema.json").read_text())
NAMES = ["layers.1", "layers.2", "layers.4"]

# skipnet's blocks, by hand (tests/skipnet.py): weights + int32 biases of the convolutions in each block
W = (2 * (8 * 3 * 3 * 8 + 8 * 4),  # block 0: two 3x3 convs 8 -> 8
     (3 * 3 * 8 + 8 * 4) + (8 * 8 + 8 * 4),  # block 1: depthwise 3x3, conv 1x1 8 -> 8
     16 * 3 * 3 * 16 + 16 * 4)  # block 2: 3x3 conv 16 -> 16
A = (6 * 6 * 8, 6 * 6 * 8, 3 * 3 * 16)  # each block's int8 input
BASE_W = ((3 * 3 * 3 * 8 + 8 * 4) + (8 * 3 * 3 * 16 + 16 * 4) + (8 * 16 + 16 * 4) + (16 * 16 + 16 * 4)
          + 2 * 4 + (16 * 10 + 10 * 4))  # stem, projection 3x3 and 1x1, conv 1x1, reshape's shape, FC

# a study: 1,000,000 instructions for the full head, blocks of 300k, 200k and 400k (base 100k)
COST = (300_000, 200_000, 400_000)
FULL_I = 1_000_000


def instructions(mask: int) -> int:
    return FULL_I - sum(c for i, c in enumerate(COST) if mask >> i & 1)


ACC = {0: 0.96, 1: 0.94, 2: 0.955, 3: 0.93, 4: 0.90, 5: 0.85, 6: 0.89, 7: 0.50}


def make_study(**changes) -> dict:
    study = {"example": "digits", "epochs": 1, "blocks": 3,
             "deployed": {"policy": "block_drop", "int8": {str(m): a for m, a in ACC.items()}},
             "firmware": {"board": "qemu-mps2-an386", "ok": True, "flash_bytes": 1, "ram_bytes": 1,
                          "masks": {str(m): {"instructions": instructions(m), "predicted_instructions": None,
                                             "labels_equal_reference": 1.0, "mask_used": 1.0} for m in range(8)}},
             "ok": True}
    study.update(changes)
    return study


def write_bundle(out: Path, blocks: int = 3, names=NAMES) -> Path:
    """An adaptive_resnet bundle with skipnet as its head (the tail is a placeholder file)."""
    from tinysplit.manifest import (DeviceModel, FTensor, HostTail, InputSpec, Manifest, QTensor, sha256_file,
                                    write_manifest)

    (out / "device").mkdir(parents=True)
    (out / "host").mkdir()
    head, tail = out / "device/head.tflite", out / "host/tail.onnx"
    head.write_bytes(skipnet())
    tail.write_bytes(b"placeholder")
    dm = DeviceModel("head", "device/head.tflite", sha256_file(head), "features",
                     (QTensor("input", (1, 6, 6, 3), "int8", 0.02, -3),),
                     (QTensor("output", (1, 10), "int8", 0.5, 0),), ("CONV_2D", "ADD"), 1000, 1000)
    th = HostTail("tail", "host/tail.onnx", sha256_file(tail), ("head",), (FTensor("head", (1, 10), "float32"),),
                  (FTensor("logits", (1, 10), "float32"),))
    data = {"blocks": blocks, "default_mask": 0, **({"block_names": names} if names else {})}
    write_manifest(Manifest(name="skipnet", bundle_id="0000abcd", method="adaptive_resnet",
                            input=InputSpec((3, 6, 6), "float32", None), classes=(), device_models=(dm,),
                            host_tails=(th,), method_data={"adaptive_resnet": data}), out)
    return out


@pytest.fixture
def study_dir(tmp_path) -> Path:
    d = tmp_path / "study"
    write_bundle(d / "bundle")
    (d / "adaptive_study.json").write_text(json.dumps(make_study()))
    return d


# ---------------------------------------------------------------------------------------------
# profile.py
# ---------------------------------------------------------------------------------------------

def test_block_costs_of_skipnet_by_hand():
    from tinysplit.exporter.codegen.emit_c import render_model

    c = block_costs(skipnet())
    assert c.weight_bytes == W and c.act_bytes == A
    assert c.base_weight_bytes == BASE_W and c.const_bytes == BASE_W + sum(W)
    assert c.arena_bytes == render_model(skipnet(), "head", skippable=True).plan.arena_bytes > 0


def test_block_costs_needs_a_block():
    from skipnet import _conv
    from tflite_builder import ModelBuilder
    import numpy as np

    b = ModelBuilder()
    x = b.tensor((1, 6, 6, 3), "int8", 0.02, -3, name="input")
    y, _, _ = _conv(b, np.random.default_rng(0), x, (0.02, -3), 6, 3, 8, 3, act="RELU")
    with pytest.raises(InputError, match="no skippable residual blocks"):
        block_costs(b.build([x], [y]))


def test_instruction_costs_and_the_accuracy_model():
    cost, base, board = instruction_costs(make_study(), 3)
    assert cost == COST and base == FULL_I - sum(COST) and board == "qemu-mps2-an386"
    acc = accuracy_model(make_study(), 3)
    assert acc.acc_full == 0.96 and acc.drops == pytest.approx((0.02, 0.005, 0.06))
    assert dict(acc.measured) == ACC and acc.accuracy(5) == (0.85, True)


@pytest.mark.parametrize("change, words", [
    (lambda s: s.pop("firmware"), ["no 'firmware' section", "--board"]),
    (lambda s: s["firmware"]["masks"].pop("0"), ["mask 0 (the full model)", "--board"]),
    (lambda s: s["firmware"]["masks"].pop("4"), ["mask 0x4 (block 2 alone)", "--board"]),
    (lambda s: s["firmware"]["masks"]["2"].update(instructions=None), ["no instruction count", "0x2"]),
    (lambda s: s["firmware"]["masks"]["1"].update(instructions=FULL_I + 5), ["block 0 cost -5", "slower"]),
    (lambda s: s["deployed"]["int8"].pop("2"), ["deployed.int8", "0x2 (block 1 alone)"]),
    (lambda s: s.pop("deployed"), ["deployed.int8"]),
    (lambda s: s.update(blocks=4), ["study has 4 skippable blocks", "bundle's head has 3"]),
    (lambda s: s.pop("blocks"), ["field 'blocks'"]),
])
def test_a_study_missing_what_the_profile_needs(change, words):
    study = make_study()
    change(study)
    with pytest.raises(InputError) as e:
        profile_from_parts(block_costs(skipnet()), study, 108, 10)
    for w in words:
        assert w in str(e.value)


def test_profile_from_a_bundle(study_dir):
    profile, acc = profile_from(study_dir / "bundle", make_study())
    assert [b.name for b in profile.blocks] == NAMES
    assert [(b.instructions, b.weight_bytes, b.act_bytes) for b in profile.blocks] == list(zip(COST, W, A))
    assert profile.base_instructions == FULL_I - sum(COST) and profile.base_weight_bytes == BASE_W
    assert (profile.input_bytes, profile.output_bytes) == (6 * 6 * 3, 10)
    assert all(profile.instructions(m) == instructions(m) for m in range(8))
    assert acc.acc_full == 0.96


def test_profile_names_blocks_when_the_manifest_does_not(tmp_path):
    profile, _ = profile_from(write_bundle(tmp_path / "b", names=None), make_study())
    assert [b.name for b in profile.blocks] == ["block0", "block1", "block2"]


def test_a_bundle_whose_manifest_miscounts_the_blocks(tmp_path):
    with pytest.raises(InputError, match="method_data.adaptive_resnet.blocks says 2"):
        profile_from(write_bundle(tmp_path / "b", blocks=2, names=None), make_study(blocks=2))


# ---------------------------------------------------------------------------------------------
# the device chain
# ---------------------------------------------------------------------------------------------

def good() -> dict:
    return {"version": 1, "devices": [
        {"name": "sensor", "board": "qemu-mps2-an386", "clock_mhz": 80, "memory_bytes": 131072,
         "flash_bytes": 1048576, "energy_nj_per_instruction": 0.3, "energy_nj_per_byte": 600, "battery_j": 21600,
         "link_kbps": 250},
        {"name": "hub", "board": "qemu-netduinoplus2", "energy_nj_per_instruction": 0.8, "energy_nj_per_byte": 50,
         "mains": True, "link_kbps": 1000}]}


def test_a_good_chain_and_its_defaults():
    from tinysplit.boards import get_board
    from tinysplit.firmware.apps import get_app
    from tinysplit.firmware.project import CODE_ESTIMATE_BYTES

    chain = chain_from_dict(good(), "chain.yaml")
    sensor, hub = chain.devices
    assert chain.names == ("sensor", "hub")
    assert sensor.clock_hz == 80e6 and sensor.memory_bytes == 131072 and sensor.battery_j == 21600
    assert sensor.energy_per_instruction_j == pytest.approx(0.3e-9) and sensor.energy_per_byte_j == pytest.approx(6e-7)
    assert sensor.link_bps == 250e3 and not sensor.mains
    board = get_board("qemu-netduinoplus2")
    assert hub.clock_hz == board.clock_hz and hub.memory_bytes == board.ram.length
    assert hub.flash_bytes == board.flash.length and hub.mains and math.isinf(hub.battery_j)
    # the planner sees what is left for the model: the project generator's fit rule
    r = hub.resources()
    assert r.memory_bytes == board.ram.length - get_app("adaptive_resnet").ram_bytes - board.stack_bytes
    assert r.flash_bytes == board.flash.length - CODE_ESTIMATE_BYTES
    assert r.instructions_per_s == board.clock_hz and r.link_bps == 1e6 and math.isinf(r.battery_j)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_chains_load(name):
    path = shipped_devices(name)
    assert path.parent == REPO / "tinysplit/methods/adaptive_resnet/devices"
    chain = load_devices(path)
    assert len(chain.devices) == {"one_m4.yaml": 1, "two_m4.yaml": 2}[name]
    assert all(d.board in ("qemu-mps2-an386", "qemu-netduinoplus2") for d in chain.devices)  # Cortex-M4 boards
    assert yaml.safe_load(path.read_text()) and path.read_text().startswith("#")  # says where its numbers come from


def _set(i: int, **kv):
    def change(d):
        d["devices"][i].update(kv)
    return change


def _drop(i: int, key: str):
    def change(d):
        d["devices"][i].pop(key)
    return change


@pytest.mark.parametrize("change, device, field, words", [
    (_set(1, board="stm32x"), "device 1 ('hub')", "board", "unknown board 'stm32x'"),
    (_set(0, clock_mhz=-5), "device 0 ('sensor')", "clock_mhz", "less than or equal to the minimum of 0"),
    (_set(0, clock_mhz=math.inf), "device 0 ('sensor')", "clock_mhz", "finite"),
    (_set(1, energy_nj_per_byte="lots"), "device 1 ('hub')", "energy_nj_per_byte", "not of type 'number'"),
    (_drop(1, "link_kbps"), "device 1 ('hub')", "link_kbps", "required"),
    (_drop(0, "energy_nj_per_instruction"), "device 0 ('sensor')", "energy_nj_per_instruction", "required"),
    (_set(0, mains=True), "device 0 ('sensor')", "mains", "not both"),
    (_drop(0, "battery_j"), "device 0 ('sensor')", "battery_j", "mains: true"),
    (_set(1, mains=False), "device 1 ('hub')", "battery_j", "mains: true"),
    (_set(1, battery_j=0), "device 1 ('hub')", "battery_j", "less than or equal to the minimum of 0"),
    (_set(1, name="sensor"), "device 1 ('sensor')", "name", "device 0 has this name too"),
    (_set(1, name="9 hub"), "device 1 ('9 hub')", "name", "does not match"),
    (_set(0, memory_bytes=64 << 20), "device 0 ('sensor')", "memory_bytes", "more than board 'qemu-mps2-an386'"),
    (_set(0, memory_bytes=4096), "device 0 ('sensor')", "memory_bytes", "leave nothing for the model's arena"),
    (_set(1, flash_bytes=8192), "device 1 ('hub')", "flash_bytes", "leave nothing for the model's weights"),
    (_set(1, flash_bytes=2 << 20), "device 1 ('hub')", "flash_bytes", "more than board 'qemu-netduinoplus2'"),
    (_set(1, radio="ble"), "device 1 ('hub')", None, "'radio' was unexpected"),
])
def test_a_bad_device_names_the_device_and_the_field(change, device, field, words):
    data = good()
    change(data)
    with pytest.raises(InputError) as e:
        chain_from_dict(data, "chain.yaml")
    msg = str(e.value)
    assert msg.startswith(f"chain.yaml: {device}") and words in msg, msg
    if field:
        assert f"field '{field}'" in msg, msg


def test_a_bad_devices_file(tmp_path):
    with pytest.raises(InputError, match="cannot read devices file"):
        load_devices(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("devices: [\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_devices(tmp_path / "bad.yaml")
    for data, words in (([], "expected a mapping"), ({"devices": []}, "field 'devices'"),
                        ({"devices": good()["devices"], "extra": 1}, "'extra' was unexpected")):
        with pytest.raises(InputError, match=words):
            chain_from_dict(data, "x.yaml")
    (tmp_path / "c.json").write_text(json.dumps(good()))
    assert load_devices(tmp_path / "c.json").names == ("sensor", "hub")


def test_the_devices_schema_is_valid_and_ships():
    schema = json.loads((REPO / "tinysplit/schemas/adaptive_devices.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"tinysplit.methods.adaptive_resnet" = ["devices/*.yaml", "scenarios/*.yaml"]' in pyproject
    for name in SHIPPED:  # every shipped file is valid against the schema itself, not only the loader
        jsonschema.validate(yaml.safe_load(shipped_devices(name).read_text()), schema)


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def devices_file(tmp_path: Path, **sensor) -> Path:
    data = good()
    data["devices"][0].update(sensor)
    p = tmp_path / "chain.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_the_command_plans_and_compares(study_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    # at 1 MHz the full head takes 1 s: an 850 ms budget and a 94.5% floor leave mask 0x2 (block 1 skipped):
    # 800 ms of compute and the output's ADAPTIVE_OUTPUT frame (10 data bytes, 8 of mask and instructions, 24 of
    # header and CRC) at 250 kbit/s
    dev = tmp_path / "one.yaml"
    dev.write_text(yaml.safe_dump({"devices": [dict(good()["devices"][0], clock_mhz=1)]}))
    rc = main(["adaptive-plan", "--study", str(study_dir), "--devices", str(dev), "--floor", "0.945",
               "--budget-ms", "850", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    jsonschema.validate(data, PLAN_SCHEMA)
    assert data["mask"] == 2 and data["skipped"] == ["layers.2"] and data["placement"] == [0, None, 0]
    assert data["accuracy"] == {"value": 0.955, "source": "measured"}
    assert "plan: mask 0x2 (skips layers.2), accuracy 95.50% (measured)" in text
    assert "layers.1 -> sensor, layers.2 skipped, layers.4 -> sensor" in text
    assert "latency 801.34 ms = compute 800.00 ms + transfer 1.34 ms + host 0.00 ms" in text
    full = next(line for line in text.splitlines() if line.strip().startswith("always full"))
    assert "0x0" in full and "latency_budget" in full
    fixed = next(line for line in text.splitlines() if line.strip().startswith("best fixed mask"))
    assert "0x2" in fixed and fixed.endswith("nothing")  # one device: the fastest mask over the floor is the plan
    assert f"plan: {out}" in text and "1 MHz" in text


def test_a_chain_beats_the_best_fixed_mask(study_dir, tmp_path, capsys):
    # the sensor at 2 MHz, the hub at 168 MHz; floor 93%: the best fixed mask is 0x3 (500k instructions, 93%),
    # 250 ms on the sensor, over a 100 ms budget. The plan keeps the base on the sensor (100k: 50 ms) and
    # sends block 2's input (144 + 8 + 24 bytes: 5.6 ms) to the hub, which runs block 2 (400k: 2.4 ms).
    dev = devices_file(tmp_path, clock_mhz=2)
    out = tmp_path / "plan.json"
    rc = main(["adaptive-plan", "--study", str(study_dir), "--devices", str(dev), "--floor", "0.93",
               "--budget-ms", "100", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["mask"] == 3 and data["placement"] == [None, None, 1]
    assert data["latency_s"]["total"] == pytest.approx(0.05 + 176 * 8 / 250e3 + 400e3 / 168e6 + 42 * 8 / 1e6)
    assert data["devices"][0]["sent_bytes"] == 176 and data["devices"][1]["blocks"] == [2]
    assert "layers.1 skipped, layers.2 skipped, layers.4 -> hub" in text
    rows = {line.split("  ")[1].strip(): line for line in text.splitlines() if line.startswith("  ") and "0x" in line}
    assert rows["plan"].endswith("nothing")
    assert "0x0" in rows["always full (mask 0)"] and rows["always full (mask 0)"].endswith("latency_budget")
    fixed = rows["best fixed mask (fastest measured >= floor)"]
    assert "0x3" in fixed and "251.34 ms" in fixed and fixed.endswith("latency_budget")
    profile, acc = profile_from(study_dir / "bundle", make_study())
    assert best_fixed_mask(profile, acc, 0.93) == 3 and best_fixed_mask(profile, acc, 0.99) is None
    assert best_fixed_mask(profile, acc, 0.95) == 2  # 0x2 (800k) beats 0x0 (1M)
    # a budget under the sensor's base alone (50 ms) cannot be met: exit 2, the planner's message
    rc = main(["adaptive-plan", "--study", str(study_dir), "--devices", str(dev), "--floor", "0.93",
               "--budget-ms", "40"])
    captured = capsys.readouterr()
    assert rc == 2 and "latency budget 40.00 ms cannot be met" in captured.err and captured.out == ""


def test_json_output_validates(study_dir, tmp_path, capsys):
    dev = devices_file(tmp_path, clock_mhz=1)  # the sensor at 1 MHz (base: 100 ms), the hub at 168 MHz
    rc = main(["adaptive-plan", "--study", str(study_dir), "--devices", str(dev), "--json", "--floor", "0.9"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    jsonschema.validate(data, PLAN_SCHEMA)
    # the hub runs block 2 only: its input is the smallest activation to send (144 B against 288 B)
    assert data["mask"] == 3 and data["placement"] == [None, None, 1]
    assert [d["name"] for d in data["devices"]] == ["sensor", "hub"] and data["devices"][1]["battery_j"] is None


def test_infeasible_exits_2_and_writes_nothing(study_dir, tmp_path):
    out = tmp_path / "plan.json"
    r = run_cli("adaptive-plan", "--study", str(study_dir), "--floor", "0.99", "--out", str(out))
    assert r.returncode == 2 and r.stdout == ""
    assert "accuracy floor 99.00% cannot be met: the best accuracy of any mask is 96.00%" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [study_dir]
    # a battery that cannot last: the same, naming the device
    dev = devices_file(tmp_path, battery_j=0.001)
    r = run_cli("adaptive-plan", "--study", str(study_dir), "--devices", str(dev), "--out", str(out))
    assert r.returncode == 2 and "battery of device 'sensor'" in r.stderr and not out.exists()


def test_the_default_devices_and_floor(study_dir, capsys):
    rc = main(["adaptive-plan", "--study", str(study_dir)])
    text = capsys.readouterr().out
    assert rc == 0 and "one_m4.yaml" in text and "accuracy floor 95.00% (full model 96.00% less 1 point)" in text
    assert "plan: mask 0x2" in text  # 0x1 (94%) is under the floor, 0x2 (95.5%) the fastest above it


@pytest.mark.parametrize("args, words", [
    (["--rate", "0"], "--rate and --horizon-s must be positive"),
    (["--floor", "95"], "--floor is an accuracy from 0 to 1"),
    (["--budget-ms", "-1"], "--budget-ms must be positive"),
    (["--host-ms", "nan"], "--host-ms must be a finite number"),
    (["--max-utilization", "1.5"], "--max-utilization must be above 0 and at most 1"),
    (["--out", "/nonexistent-dir/plan.json"], "--out: the directory '/nonexistent-dir' does not exist"),
])
def test_bad_arguments(study_dir, capsys, args, words):
    assert main(["adaptive-plan", "--study", str(study_dir), *args]) == 2
    assert words in capsys.readouterr().err


def test_bad_study_directories(study_dir, tmp_path, capsys):
    assert main(["adaptive-plan", "--study", str(tmp_path / "nothing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["adaptive-plan", "--study", str(tmp_path / "empty")]) == 2
    assert "has no adaptive_study.json" in capsys.readouterr().err
    no_fw = make_study()
    no_fw.pop("firmware")
    (study_dir / "adaptive_study.json").write_text(json.dumps(no_fw))
    assert main(["adaptive-plan", "--study", str(study_dir)]) == 2
    assert "rerun 'tinysplit adaptive-study' with a --board" in capsys.readouterr().err
    shutil.rmtree(study_dir / "bundle")
    assert main(["adaptive-plan", "--study", str(study_dir)]) == 2
    assert "has no bundle (bundle/manifest.json)" in capsys.readouterr().err


def test_the_cli_parser_stays_light():
    import subprocess
    import sys

    code = ("import sys; from tinysplit.cli import build_parser; build_parser().parse_args(['adaptive-plan', "
            "'--study', 'x']); "
            "print(sorted(m for m in ('scipy', 'torch', 'tensorflow', 'jinja2') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


# ---------------------------------------------------------------------------------------------
# the real digits study (slow: trains, exports and runs every mask in QEMU)
# ---------------------------------------------------------------------------------------------

def check_real_study(study: Path) -> None:
    """What adaptive-plan makes of a real adaptive-study directory (also run by hand on a saved one)."""
    from tinysplit.firmware.apps.adaptive_resnet import PREDICTION_TOLERANCE

    data = json.loads((study / "adaptive_study.json").read_text())
    profile, acc = profile_from(study / "bundle", data)
    measured = {int(m): r["instructions"] for m, r in data["firmware"]["masks"].items()}
    B = data["blocks"]
    assert len(profile.blocks) == B
    for m in [0, *(1 << i for i in range(B))]:  # exact where the costs come from
        assert profile.instructions(m) == measured[m]
    for m, n in measured.items():  # the additive model within the firmware check's tolerance elsewhere
        assert abs(profile.instructions(m) - n) <= PREDICTION_TOLERANCE * measured[0]
    assert acc.acc_full == data["deployed"]["int8"]["0"]
    demand = Demand(1.0, 3600.0, acc.acc_full - 0.02)
    for name in SHIPPED:
        p = plan(profile, acc, load_devices(shipped_devices(name)).resources(), demand)
        jsonschema.validate(p.to_json(), PLAN_SCHEMA)
        assert p.accuracy >= acc.acc_full - 0.02 - 1e-9 and p.accuracy_measured
    with pytest.raises(InfeasibleError):
        plan(profile, acc, load_devices(shipped_devices()).resources(), Demand(1.0, 3600.0, 1.0, 1e-6))
    r = run_cli("adaptive-plan", "--study", str(study), "--devices", str(shipped_devices("two_m4.yaml")), "--json")
    assert r.returncode == 0, r.stderr
    jsonschema.validate(json.loads(r.stdout), PLAN_SCHEMA)


@pytest.mark.slow
@pytest.mark.emulator
@pytest.mark.skipif(not have("qemu-system-arm") or not have("arm-none-eabi-gcc"),
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_adaptive_plan_on_the_real_digits_study(adaptive_study_dir):
    check_real_study(adaptive_study_dir)

