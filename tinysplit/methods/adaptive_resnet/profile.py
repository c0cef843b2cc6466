"""The planner's inputs from measured data: an ``adaptive-study`` result and its bundle.

``profile_from(bundle_dir, study)`` -> (``planner.BlockProfile``, ``planner.AccuracyModel``):

- instructions (the study's ``firmware.masks``, counted in QEMU on the study's board): block i
  costs c_i = I(0) - I(1 << i), the base is I(0) - sum_i c_i, so the planner's additive model gives
  I(0) and every single-block mask exactly (the study's "predicted" column is that model);
- constants (the bundle's head .tflite, ``exporter/codegen/blocks.find_residual_blocks``): w_i is the
  bytes of the distinct constant tensors (weights, biases, shapes) the operators of block i read; a
  constant read by several blocks counts in each of them (each device running one needs it) and the
  base is every other constant of the head: all its constant bytes less those read by any block
  (= all less sum_i w_i when blocks share none). These are the .tflite's bytes; the generated C also
  holds per-channel requantization tables and kernel parameters (its ``const_bytes``, a little more);
- a_i: the int8 bytes of block i's input tensor (the identity shortcut x, = its output's size);
- arena: the code generator's arena for the skippable model
  (``render_model(tflite, "head", skippable=True).plan.arena_bytes``), one plan for every mask;
- input and output bytes: the head's int8 input and output from the manifest;
- accuracy: acc_full = the int8 accuracy of mask 0, d_i = acc(0) - acc(1 << i), and every mask the
  study measured (``deployed.int8``) as measured.

``block_costs(tflite)`` is the .tflite part alone (no bundle needed); ``instruction_costs`` and
``accuracy_model`` the study's parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tinysplit.errors import InputError

STUDY_FILE = "adaptive_study.json"
BUNDLE_DIR = "bundle"
RERUN = "rerun 'tinysplit adaptive-study' with a --board (the default, qemu-mps2-an386, measures every mask)"


@dataclass(frozen=True)
class BlockCosts:
    """What a head's .tflite says of its skippable blocks."""

    weight_bytes: tuple[int, ...]  # w_i
    act_bytes: tuple[int, ...]  # a_i: int8 bytes of block i's input (= output) tensor
    base_weight_bytes: int  # the head's constants read by no block
    const_bytes: int  # every constant tensor of the head
    arena_bytes: int  # the code generator's arena with skippable blocks

    @property
    def blocks(self) -> int:
        return len(self.weight_bytes)


def block_costs(tflite: bytes) -> BlockCosts:
    """w_i, a_i, the base's constants and the skippable model's arena of an int8 .tflite."""
    from tinysplit.exporter.codegen.blocks import find_residual_blocks
    from tinysplit.exporter.codegen.emit_c import render_model
    from tinysplit.exporter.tflite_model import parse_tflite

    model = parse_tflite(bytes(tflite))
    blocks = find_residual_blocks(model)
    if not blocks:
        raise InputError("the head has no skippable residual blocks (identity shortcuts); an Adaptive ResNet plan "
                         "needs at least one")
    nbytes = {t.index: int(t.data.nbytes) for t in model.tensors if t.is_constant}  # type: ignore[union-attr]
    weights, acts, in_blocks = [], [], set()
    for b in blocks:
        read = {i for k in b.ops for i in model.operators[k].inputs if i >= 0 and i in nbytes}
        in_blocks |= read
        weights.append(sum(nbytes[i] for i in read))
        x = model.tensors[b.input]
        acts.append(_tensor_bytes(x.shape, x.dtype))
    total = sum(nbytes.values())
    arena = render_model(bytes(tflite), "head", skippable=True).plan.arena_bytes
    return BlockCosts(tuple(weights), tuple(acts), total - sum(nbytes[i] for i in in_blocks), total, int(arena))


def _tensor_bytes(shape: Sequence[int], dtype: str) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n * {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "float32": 4}.get(dtype, 1)


def _measured(table: Any, what: str) -> dict[int, Any]:
    if not isinstance(table, Mapping):
        raise InputError(f"the study's {what} is not a mapping of masks; {RERUN}")
    try:
        return {int(k): v for k, v in table.items()}
    except (TypeError, ValueError):
        raise InputError(f"the study's {what} has a key that is not a mask: {sorted(map(str, table))}") from None


def study_blocks(study: Mapping[str, Any]) -> int:
    b = study.get("blocks")
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise InputError(f"the study has no block count (field 'blocks', got {b!r}); is it an adaptive-study "
                         "result (adaptive_study.json)?")
    return b


def instruction_costs(study: Mapping[str, Any], blocks: int) -> tuple[tuple[int, ...], int, str]:
    """(c_i per block, the base's instructions, the board they were counted on) from the study's
    ``firmware.masks``; InputError naming what is missing."""
    fw = study.get("firmware")
    if not isinstance(fw, Mapping) or "masks" not in fw:
        raise InputError(f"the study has no instruction counts (no 'firmware' section: it was run with --board none); "
                         f"{RERUN}")
    masks = _measured(fw["masks"], "field 'firmware.masks'")
    need = [0, *(1 << i for i in range(blocks))]
    counts: dict[int, int] = {}
    for m in need:
        row = masks.get(m)
        n = row.get("instructions") if isinstance(row, Mapping) else None
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            which = "mask 0 (the full model)" if m == 0 else f"mask 0x{m:x} (block {m.bit_length() - 1} alone)"
            got = "is missing" if row is None else f"has no instruction count ({n!r})"
            raise InputError(f"the study's field 'firmware.masks' {got} for {which}: the per-block costs need mask 0 "
                             f"and every single-block mask; {RERUN}")
        counts[m] = n
    cost = tuple(counts[0] - counts[1 << i] for i in range(blocks))
    bad = [i for i, c in enumerate(cost) if c < 0]
    if bad:
        raise InputError(f"the study's instruction counts make block {bad[0]} cost {cost[bad[0]]:,} instructions "
                         f"(skipping it made the head slower: {counts[1 << bad[0]]:,} against {counts[0]:,}); {RERUN}")
    base = counts[0] - sum(cost)
    if base < 0:
        raise InputError(f"the study's instruction counts leave the base {base:,} instructions (the blocks' costs "
                         f"{sum(cost):,} exceed the full model's {counts[0]:,}); {RERUN}")
    return cost, base, str(fw.get("board", "?"))


def accuracy_model(study: Mapping[str, Any], blocks: int):
    """acc_full, the drops and every measured mask from the study's ``deployed.int8`` accuracies."""
    from tinysplit.methods.adaptive_resnet.planner import AccuracyModel

    dep = study.get("deployed")
    if not isinstance(dep, Mapping) or "int8" not in dep:
        raise InputError("the study has no int8 accuracies (field 'deployed.int8'); rerun 'tinysplit adaptive-study'")
    acc = _measured(dep["int8"], "field 'deployed.int8'")
    for m in (0, *(1 << i for i in range(blocks))):
        if m not in acc:
            which = "mask 0 (the full model)" if m == 0 else f"mask 0x{m:x} (block {m.bit_length() - 1} alone)"
            raise InputError(f"the study's field 'deployed.int8' lacks {which}: the accuracy drops need mask 0 and "
                             "every single-block mask; rerun 'tinysplit adaptive-study'")
    bad = [m for m in acc if m < 0 or m >> blocks]
    if bad:
        raise InputError(f"the study's field 'deployed.int8' has mask 0x{bad[0]:x}, but the head has {blocks} blocks")
    full = acc[0]
    drops = tuple(full - acc[1 << i] for i in range(blocks))
    return AccuracyModel(full, drops, acc)


def profile_from_parts(costs: BlockCosts, study: Mapping[str, Any], input_bytes: int, output_bytes: int,
                       names: Sequence[str] | None = None):
    """The profile and accuracy model from a head's ``block_costs`` and a study. Data goes out as
    ADAPTIVE_OUTPUT frames: at most ADAPTIVE_OUTPUT_CHUNK bytes each, behind the frame header, the
    8-byte (mask, instructions) header and the CRC."""
    from tinysplit.methods.adaptive_resnet.planner import Block, BlockProfile
    from tinysplit.wire.frame import HEADER_SIZE, TRAILER_SIZE
    from tinysplit.wire.payloads import ADAPTIVE_OUTPUT_CHUNK, ADAPTIVE_OUTPUT_HEADER

    blocks = study_blocks(study)
    if blocks != costs.blocks:
        raise InputError(f"the study has {blocks} skippable blocks but the bundle's head has {costs.blocks}; give the "
                         "bundle the study exported (its bundle/ directory)")
    cost, base, _ = instruction_costs(study, blocks)
    names = list(names) if names else [f"block{i}" for i in range(blocks)]
    if len(names) != blocks:
        raise InputError(f"{len(names)} block names for {blocks} blocks")
    profile = BlockProfile(tuple(Block(n, c, w, a) for n, c, w, a in zip(names, cost, costs.weight_bytes,
                                                                          costs.act_bytes)),
                           base_instructions=base, base_weight_bytes=costs.base_weight_bytes,
                           arena_bytes=costs.arena_bytes, input_bytes=input_bytes, output_bytes=output_bytes,
                           frame_overhead_bytes=HEADER_SIZE + ADAPTIVE_OUTPUT_HEADER + TRAILER_SIZE,
                           max_payload=ADAPTIVE_OUTPUT_CHUNK)
    return profile, accuracy_model(study, blocks)


def profile_from(bundle_dir: str | Path, study: Mapping[str, Any]):
    """(BlockProfile, AccuracyModel) of an adaptive_resnet bundle and the adaptive-study result measured on
    it; InputError naming what is missing or does not match."""
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.adaptive_resnet.bundle import layout_for

    bundle = Path(bundle_dir)
    manifest = load_manifest(bundle)
    layout = layout_for(manifest)
    head = manifest.device_models[0]
    costs = block_costs((bundle / head.file).read_bytes())
    if costs.blocks != layout.blocks:
        raise InputError(f"bundle '{bundle}': the head has {costs.blocks} skippable blocks but the manifest's "
                         f"method_data.adaptive_resnet.blocks says {layout.blocks}")
    inp = head.inputs[0]
    names = manifest.method_data["adaptive_resnet"].get("block_names")
    return profile_from_parts(costs, study, _tensor_bytes(inp.shape[1:], inp.dtype), layout.output_bytes, names)


def load_study(study_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """(the study, its bundle directory) from the directory ``tinysplit adaptive-study --out`` wrote."""
    d = Path(study_dir)
    f = d / STUDY_FILE
    if not d.is_dir():
        raise InputError(f"--study: '{d}' is not a directory; give the directory 'tinysplit adaptive-study --out' "
                         f"wrote (with {STUDY_FILE} and {BUNDLE_DIR}/)")
    try:
        study = json.loads(f.read_text())
    except FileNotFoundError:
        raise InputError(f"--study: '{d}' has no {STUDY_FILE}; give the directory 'tinysplit adaptive-study --out' "
                         "wrote") from None
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"--study: cannot read '{f}': {e}") from None
    if not isinstance(study, dict):
        raise InputError(f"--study: '{f}' is not a JSON object")
    bundle = d / BUNDLE_DIR
    if not (bundle / "manifest.json").is_file():
        raise InputError(f"--study: '{d}' has no bundle ({BUNDLE_DIR}/manifest.json); give the directory "
                         "'tinysplit adaptive-study --out' wrote")
    return study, bundle


__all__ = ["BlockCosts", "accuracy_model", "block_costs", "instruction_costs", "load_study", "profile_from",
           "profile_from_parts", "study_blocks"]
