"""Adaptive ResNet planner (papers/adaptive-resnet-2307.11499.md): the skip mask of a head's residual
blocks and, over a chain of devices, which device runs which block, at the least latency under
accuracy, latency, utilization, battery and memory constraints. The paper's genetic algorithm is
replaced by an exact integer program; ``exhaustive`` enumerates every choice for small heads.

Model
-----
- Head: a base part (stem and downsampling parts: ``base_instructions``, ``base_weight_bytes``),
  never skipped, and B <= 32 residual blocks with identity shortcuts; block i has c_i instructions
  (measured in QEMU), w_i bytes of constants (flash) and a_i int8 bytes of input (= output) tensor.
  Mask bit i set = block i skipped (CONTROL key 4, a u32). Skipping costs only the mask test:
  I(mask) = I_full - sum_{i in mask} c_i, I_full = base + sum_i c_i. The arena (``arena_bytes``,
  RAM) is the same for every mask.
- Wire: n data bytes go as max(1, ceil(n / max_payload)) frames of ``frame_overhead_bytes`` each
  (header + CRC): wire(n) = n + frames * overhead bytes on the link.
- Accuracy: acc(mask) = the measured value where the table has the mask, else the additive
  estimate acc_full - sum_{i in mask} d_i (d_i = acc_full - accuracy without block i).
- Devices form a chain 0..D-1 (one device: D = 1). Device 0 receives the input and runs the whole
  base (a simplification: the downsampling parts between blocks are counted there too). Each kept
  block runs on one device, in block order with non-decreasing device index. Before kept block j on
  device d, if the activation sits on device e != d (e: the device of the previous kept block, or 0)
  a_j goes from e to d over e's link, directly: devices between them that run nothing are passed
  over, not relayed. The last device holding the activation sends ``output_bytes`` to the host over
  its link. The input's arrival at device 0 is the same for every plan and is not counted.
- Per sample: compute_s(d) = instructions on d / instructions_per_s(d); a transfer takes
  wire(bytes) * 8 / link_bps of the sender; latency = sum of compute + sum of transfers (the output
  included) + host_s; energy(d) = energy_per_instruction_j * instructions on d +
  energy_per_byte_j * wire bytes d sends (receiving is not counted).
- Constraints (names as in ``Plan.violations``): accuracy_floor: acc(mask) >= floor;
  latency_budget: latency <= budget (when given); utilization: request_rate * compute_s(d) <=
  max_utilization (link time not counted); battery: request_rate * horizon_s * energy(d) <=
  battery_j (math.inf: mains powered); memory: arena_bytes <= memory_bytes on every device that
  runs something (device 0 always); flash: base weights on device 0, plus, over a chain, the
  weights of the blocks placed on each device (a new placement is a new deployment), while on one
  device the firmware holds every block (a new mask is one CONTROL frame), so there memory and flash
  do not depend on the mask.
- Objective: the least latency; ties (within 1e-9 relative) go to the higher accuracy (within
  1e-9), then to the smaller mask integer. Which of the chosen mask's equally fast placements is
  returned is not specified.

Formulation (``plan``): placements are the paths of a layered graph. Node (k, e): the activation
entering block k sits on device e (k = 0..B; source (0, 0)). From (k, e): a skip edge to (k+1, e)
and a run edge to (k+1, d) for every d >= e, costing c_k / ips_d plus, for d > e, a_k's transfer
on e's link; from (B, e) an output edge to the host. Binary edge variables carrying one unit of
flow from the source are exactly the monotone placements; skip s_k and "block k on d" are sums of
edges, so instructions, bytes sent, energy, flash, utilization and latency are linear, and so is
the additive accuracy. Measured accuracies (delta_m = measured - estimate of mask m) take two
programs, the better answer winning:
- the additive one: a mask the solver returns with delta_m < 0 gets a binary y_m >= [s == m] and
  the term delta_m * y_m in the accuracy, and the program is solved again (for a mask under the
  floor that row is a no-good cut); at the end it overestimates only masks it did not return;
- the measured one: one binary y_m per mask with delta_m > 0 meeting the accuracy limits, exactly
  one chosen and s = m (s_k = sum of y_m over the masks skipping block k): those masks, which the
  additive program underestimates, with their measured accuracy.
So the result is optimal over the measured accuracies. Three steps (scipy.optimize.milp, HiGHS,
gap 0; latency in microseconds and accuracy in millionths, below the solver's tolerances): the
least latency L; the highest accuracy A with latency <= L; the smallest mask with latency <= L and
accuracy >= A.

Re-planning, when the devices report new resources (battery, link rate) or the demand changes, is
calling ``plan`` again with them; the planner keeps no state.

Infeasible: ``InfeasibleError`` names the first group that cannot be met, with its numbers: the
floor against the best accuracy of any mask; memory/flash; the battery against the plan with the
least largest energy/battery ratio; utilization likewise; the budget against the fastest plan.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator, NamedTuple, Sequence

from tinysplit import __version__
from tinysplit.errors import InputError, TinysplitError
from tinysplit.wire.frame import HEADER_SIZE, MAX_PAYLOAD, TRAILER_SIZE

FORMAT = "tinysplit-adaptive-plan"
VERSION = 1
SCHEMA = "adaptive_plan.schema.json"  # in tinysplit/schemas
CONSTRAINTS = ("accuracy_floor", "latency_budget", "utilization", "battery", "memory", "flash")
MAX_BLOCKS = 32  # the skip mask is a u32 CONTROL value
MAX_EXHAUSTIVE_BLOCKS = 16
MAX_EXHAUSTIVE_CANDIDATES = 100_000
MILP = "scipy.optimize.milp (HiGHS)"
_REL = 1e-9  # relative slack of limits and latency ties
_ACC = 1e-9  # accuracy ties and the floor's slack
_DELTA = 1e-12  # a measured value this close to its estimate adds nothing to the program


class InfeasibleError(InputError):
    """No mask and placement meets every constraint; the message names the one that cannot be met."""


def _num(where: str, value: Any, *, integer: bool = False, positive: bool = False, high: float | None = None,
         infinite: bool = False, signed: bool = False) -> Any:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or math.isnan(value) or (
            math.isinf(value) and not infinite):
        raise InputError(f"{where} must be a {'whole' if integer else 'finite'} number, got {value!r}")
    if (value < 0 and not signed) or (positive and value <= 0):
        raise InputError(f"{where} must be {'positive' if positive else 'zero or more'}, got {value!r}")
    if high is not None and value > high:
        raise InputError(f"{where} must be at most {high}, got {value!r}")
    return int(value) if integer else float(value)


def check_mask(mask: int, blocks: int | Sequence[Any]) -> int:
    """``mask`` as an int after checking it names only existing blocks (``blocks``: B or the blocks)."""
    b = blocks if isinstance(blocks, int) else len(blocks)
    if isinstance(mask, bool) or not isinstance(mask, numbers.Integral) or mask < 0:
        raise InputError(f"a skip mask is a whole number >= 0 (bit i set skips block i), got {mask!r}")
    if mask >> b:
        raise InputError(f"mask {int(mask)} ({int(mask):#b}) skips block {int(mask).bit_length() - 1}, but the head "
                         f"has {b} skippable blocks (0..{b - 1}): bits {b} and above must be clear")
    return int(mask)


@dataclass(frozen=True)
class Block:
    name: str
    instructions: int  # c_i, measured in QEMU
    weight_bytes: int  # w_i: flash of the block's constants
    act_bytes: int  # a_i: int8 bytes of its input (= output) tensor, sent when the chain is cut before it

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"a block's name must be a non-empty string, got {self.name!r}")
        for f in ("instructions", "weight_bytes", "act_bytes"):
            object.__setattr__(self, f, _num(f"block '{self.name}': {f}", getattr(self, f), integer=True,
                                             positive=f == "act_bytes"))


@dataclass(frozen=True)
class BlockProfile:
    blocks: tuple[Block, ...]  # or (name, instructions, weight_bytes, act_bytes) tuples
    base_instructions: int
    base_weight_bytes: int
    arena_bytes: int
    input_bytes: int
    output_bytes: int
    frame_overhead_bytes: int = HEADER_SIZE + TRAILER_SIZE
    max_payload: int = MAX_PAYLOAD

    def __post_init__(self) -> None:
        try:
            blocks = tuple(b if isinstance(b, Block) else Block(*b) for b in self.blocks)
        except TypeError:
            raise InputError("each block is a Block or a (name, instructions, weight_bytes, act_bytes) tuple") from None
        if not 1 <= len(blocks) <= MAX_BLOCKS:
            raise InputError(f"a head has 1 to {MAX_BLOCKS} skippable blocks (the mask is a u32), got {len(blocks)}")
        names = [b.name for b in blocks]
        if len(set(names)) != len(names):
            raise InputError(f"block names must differ: {sorted({n for n in names if names.count(n) > 1})} repeat")
        object.__setattr__(self, "blocks", blocks)
        for f in ("base_instructions", "base_weight_bytes", "arena_bytes", "input_bytes", "output_bytes",
                  "frame_overhead_bytes", "max_payload"):
            object.__setattr__(self, f, _num(f"profile: {f}", getattr(self, f), integer=True,
                                             positive=f in ("input_bytes", "output_bytes", "max_payload")))

    @property
    def full_instructions(self) -> int:
        return self.base_instructions + sum(b.instructions for b in self.blocks)

    def instructions(self, mask: int) -> int:
        """I(mask) = I_full - sum of the skipped blocks' c_i."""
        m = check_mask(mask, self.blocks)
        return self.full_instructions - sum(b.instructions for i, b in enumerate(self.blocks) if m >> i & 1)

    def wire_bytes(self, nbytes: int) -> int:
        return nbytes + max(1, math.ceil(nbytes / self.max_payload)) * self.frame_overhead_bytes


@dataclass(frozen=True)
class AccuracyModel:
    acc_full: float
    drops: tuple[float, ...]  # d_i = acc_full - accuracy without block i (may be negative)
    measured: tuple[tuple[int, float], ...] = ()  # (mask, accuracy), sorted; a {mask: accuracy} is accepted

    def __post_init__(self) -> None:
        object.__setattr__(self, "acc_full", _num("acc_full", self.acc_full, high=1.0))
        drops = tuple(_num(f"drops[{i}]", d, signed=True) for i, d in enumerate(self.drops))
        if not drops:
            raise InputError("give one accuracy drop per block")
        try:
            table = dict(self.measured)
        except (TypeError, ValueError):
            raise InputError("measured accuracies are a {mask: accuracy} mapping") from None
        table = {check_mask(m, len(drops)): _num(f"measured accuracy of mask {m}", a, high=1.0)
                 for m, a in table.items()}
        if 0 in table and abs(table[0] - self.acc_full) > _DELTA:
            raise InputError(f"the table's full model (mask 0) has accuracy {table[0]} but acc_full is "
                             f"{self.acc_full}; they must agree")
        object.__setattr__(self, "drops", drops)
        object.__setattr__(self, "measured", tuple(sorted(table.items())))
        object.__setattr__(self, "_table", table)

    def estimate(self, mask: int) -> float:
        m = check_mask(mask, len(self.drops))
        return self.acc_full - sum(d for i, d in enumerate(self.drops) if m >> i & 1)

    def accuracy(self, mask: int) -> tuple[float, bool]:
        """(acc(mask), whether it was measured)."""
        m = check_mask(mask, len(self.drops))
        return (self._table[m], True) if m in self._table else (self.estimate(m), False)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DeviceResources:
    name: str
    instructions_per_s: float  # clock * instructions per cycle
    memory_bytes: int  # RAM for the arena
    flash_bytes: int  # flash for the weights
    energy_per_instruction_j: float
    energy_per_byte_j: float  # radio, per byte sent
    battery_j: float  # energy left; math.inf: mains powered
    link_bps: float  # its outgoing link: to the next device it sends to, or the host

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"a device's name must be a non-empty string, got {self.name!r}")
        for f in ("instructions_per_s", "memory_bytes", "flash_bytes", "energy_per_instruction_j",
                  "energy_per_byte_j", "battery_j", "link_bps"):
            object.__setattr__(self, f, _num(f"device '{self.name}': {f}", getattr(self, f),
                                             integer=f.endswith("_bytes"), infinite=f == "battery_j",
                                             positive=f in ("instructions_per_s", "battery_j", "link_bps")))


@dataclass(frozen=True)
class Demand:
    request_rate: float  # samples/s
    horizon_s: float  # the batteries must last this long at this rate
    accuracy_floor: float
    latency_budget_s: float | None = None
    max_utilization: float = 1.0
    host_s: float = 0.0  # the host tail's time per sample

    def __post_init__(self) -> None:
        for f in ("request_rate", "horizon_s", "accuracy_floor", "latency_budget_s", "max_utilization", "host_s"):
            if f == "latency_budget_s" and self.latency_budget_s is None:
                continue
            object.__setattr__(self, f, _num(f"demand: {f}", getattr(self, f), positive=f not in (
                "accuracy_floor", "host_s"), high=1.0 if f in ("accuracy_floor", "max_utilization") else None))


@dataclass(frozen=True)
class DeviceUse:
    name: str
    blocks: tuple[int, ...]  # the blocks it runs
    instructions: int  # per sample (device 0: with the base)
    compute_s: float
    sent_bytes: int  # on the wire per sample, to the next device or the host
    transfer_s: float
    energy_j: float  # per sample
    horizon_energy_j: float  # request_rate * horizon_s * energy_j
    battery_j: float
    utilization: float  # request_rate * compute_s
    ram_bytes: int
    flash_bytes: int


@dataclass(frozen=True)
class Latency:
    compute_s: float
    transfer_s: float
    host_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.transfer_s + self.host_s


@dataclass(frozen=True)
class Plan:
    blocks: tuple[str, ...]
    mask: int
    placement: tuple[int | None, ...]  # per block: its device, None if skipped
    devices: tuple[DeviceUse, ...]
    latency: Latency
    accuracy: float
    accuracy_measured: bool
    violations: tuple[str, ...]  # names from CONSTRAINTS; empty for plan() and exhaustive()
    solver: str  # MILP, "exhaustive" or "fixed" (evaluate)
    solve_s: float

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(n for i, n in enumerate(self.blocks) if self.mask >> i & 1)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON (``tinysplit/schemas/adaptive_plan.schema.json``); an infinite battery is null."""
        lat = self.latency
        return {"format": FORMAT, "version": VERSION, "tinysplit": __version__, "blocks": list(self.blocks),
                "mask": self.mask, "skipped": list(self.skipped), "placement": list(self.placement),
                "accuracy": {"value": self.accuracy, "source": "measured" if self.accuracy_measured else "estimated"},
                "latency_s": {"compute": lat.compute_s, "transfer": lat.transfer_s, "host": lat.host_s,
                              "total": lat.total_s},
                "devices": [{"name": d.name, "blocks": list(d.blocks), "instructions": d.instructions,
                             "compute_s": d.compute_s, "sent_bytes": d.sent_bytes, "transfer_s": d.transfer_s,
                             "energy_per_sample_j": d.energy_j, "horizon_energy_j": d.horizon_energy_j,
                             "battery_j": None if math.isinf(d.battery_j) else d.battery_j,
                             "utilization": d.utilization, "ram_bytes": d.ram_bytes, "flash_bytes": d.flash_bytes}
                            for d in self.devices],
                "violations": list(self.violations), "solver": {"name": self.solver, "solve_s": self.solve_s}}


class _Problem:
    """Checked inputs, and the exact evaluation of one (mask, placement)."""

    def __init__(self, profile: BlockProfile, accuracy: AccuracyModel,
                 devices: DeviceResources | Sequence[DeviceResources], demand: Demand) -> None:
        devs = (devices,) if isinstance(devices, DeviceResources) else tuple(devices)
        for what, obj, kind in (("profile", profile, BlockProfile), ("accuracy", accuracy, AccuracyModel),
                                ("demand", demand, Demand)) + tuple(("device", d, DeviceResources) for d in devs):
            if not isinstance(obj, kind):
                raise InputError(f"{what} must be a {kind.__name__}, got {type(obj).__name__}")
        if not devs:
            raise InputError("give at least one device")
        names = [d.name for d in devs]
        if len(set(names)) != len(names):
            raise InputError(f"device names must differ: {sorted({n for n in names if names.count(n) > 1})} repeat")
        if len(accuracy.drops) != len(profile.blocks):
            raise InputError(f"the accuracy model has {len(accuracy.drops)} drops for {len(profile.blocks)} blocks; "
                             "give one per block, in block order")
        self.profile, self.accuracy, self.devices, self.demand = profile, accuracy, devs, demand
        self.B, self.D = len(profile.blocks), len(devs)
        self.samples = demand.request_rate * demand.horizon_s
        self.act_wire = [profile.wire_bytes(b.act_bytes) for b in profile.blocks]
        self.out_wire = profile.wire_bytes(profile.output_bytes)
        self.const_instr = [profile.base_instructions] + [0] * (self.D - 1)
        head = profile.base_weight_bytes + (sum(b.weight_bytes for b in profile.blocks) if self.D == 1 else 0)
        self.const_flash = [head] + [0] * (self.D - 1)
        self.lat_const = profile.base_instructions / devs[0].instructions_per_s + demand.host_s

    def delta(self, mask: int) -> float:
        acc, measured = self.accuracy.accuracy(mask)
        return acc - self.accuracy.estimate(mask) if measured else 0.0

    def candidates(self) -> Iterator[tuple[int, tuple[int | None, ...]]]:
        for mask in range(1 << self.B):
            kept = [k for k in range(self.B) if not mask >> k & 1]
            for devs in itertools.combinations_with_replacement(range(self.D), len(kept)):
                placement: list[int | None] = [None] * self.B
                for k, d in zip(kept, devs):
                    placement[k] = d
                yield mask, tuple(placement)

    def check_placement(self, mask: int, placement: Sequence[int | None]) -> tuple[int | None, ...]:
        if len(placement) != self.B:
            raise InputError(f"a placement names a device (or None) per block: {self.B} entries, got {len(placement)}")
        last = 0
        for k, d in enumerate(placement):
            name = self.profile.blocks[k].name
            if (d is None) != bool(mask >> k & 1):
                where = "nowhere" if d is None else f"on device {d}"
                raise InputError(f"block {k} ('{name}') is {'kept' if d is None else 'skipped'} by mask {mask} but "
                                 f"placed {where}; place exactly the kept blocks")
            if d is not None:
                if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d < self.D:
                    raise InputError(f"block {k} ('{name}'): device {d!r} is not one of 0..{self.D - 1}")
                if d < last:
                    raise InputError(f"block {k} ('{name}') on device {d} after a block on device {last}: blocks run "
                                     "along the chain, device indices non-decreasing")
                last = d
        return tuple(None if d is None else int(d) for d in placement)

    def assess(self, mask: int, placement: Sequence[int | None]) -> Plan:
        p, dm, D = self.profile, self.demand, self.D
        instr, flash, sent = list(self.const_instr), list(self.const_flash), [0] * D
        runs: list[list[int]] = [[] for _ in range(D)]
        holder = 0
        for k, d in enumerate(placement):
            if d is None:
                continue
            if d != holder:
                sent[holder] += self.act_wire[k]
                holder = d
            blk = p.blocks[k]
            instr[d] += blk.instructions
            flash[d] += blk.weight_bytes if D > 1 else 0
            runs[d].append(k)
        sent[holder] += self.out_wire
        uses, bad = [], set()
        for d, dev in enumerate(self.devices):
            compute, energy = instr[d] / dev.instructions_per_s, (
                dev.energy_per_instruction_j * instr[d] + dev.energy_per_byte_j * sent[d])
            ram = p.arena_bytes if d == 0 or runs[d] else 0
            use = DeviceUse(dev.name, tuple(runs[d]), instr[d], compute, sent[d], sent[d] * 8 / dev.link_bps, energy,
                            self.samples * energy, dev.battery_j, dm.request_rate * compute, ram, flash[d])
            bad |= {n for n, over in (("utilization", use.utilization > dm.max_utilization * (1 + _REL)),
                                      ("battery", use.horizon_energy_j > dev.battery_j * (1 + _REL)),
                                      ("memory", ram > dev.memory_bytes),
                                      ("flash", flash[d] > dev.flash_bytes)) if over}
            uses.append(use)
        latency = Latency(sum(u.compute_s for u in uses), sum(u.transfer_s for u in uses), dm.host_s)
        acc, measured = self.accuracy.accuracy(mask)
        if acc < dm.accuracy_floor - _ACC:
            bad.add("accuracy_floor")
        if dm.latency_budget_s is not None and latency.total_s > dm.latency_budget_s * (1 + _REL):
            bad.add("latency_budget")
        return Plan(tuple(b.name for b in p.blocks), mask, tuple(placement), tuple(uses), latency, acc, measured,
                    tuple(c for c in CONSTRAINTS if c in bad), "fixed", 0.0)


class _Candidate(NamedTuple):
    """What the search compares of one (mask, placement)."""

    mask: int
    placement: tuple[int | None, ...]
    latency_s: float
    accuracy: float
    violations: frozenset[str]
    energy: float  # the largest request_rate * horizon_s * energy / battery over the devices
    utilization: float  # the largest request_rate * compute_s / max_utilization over the devices

    @classmethod
    def of(cls, plan: Plan, max_utilization: float) -> _Candidate:
        return cls(plan.mask, plan.placement, plan.latency.total_s, plan.accuracy, frozenset(plan.violations),
                   max(u.horizon_energy_j / u.battery_j for u in plan.devices),
                   max(u.utilization for u in plan.devices) / max_utilization)

    def key(self, objective: str) -> tuple[float, float, float, int]:
        """``objective``'s value first, then latency, accuracy (higher first) and mask."""
        value = {"latency": self.latency_s, "accuracy": -self.accuracy, "mask": self.mask, "energy": self.energy,
                 "utilization": self.utilization}[objective]
        return value, self.latency_s, -self.accuracy, self.mask


class _Enumeration:
    """optimize() over every candidate (``exhaustive``'s diagnosis)."""

    def __init__(self, candidates: list[_Candidate]) -> None:
        self.candidates = candidates

    def optimize(self, objective: str, use: frozenset[str], latency_cap: float | None = None,
                 accuracy_min: float | None = None) -> tuple[int, tuple[int | None, ...]] | None:
        pool = [c for c in self.candidates if not use & c.violations
                and (latency_cap is None or c.latency_s <= latency_cap)
                and (accuracy_min is None or c.accuracy >= accuracy_min)]
        if not pool:
            return None
        best = min(pool, key=lambda c: c.key(objective))
        return best.mask, best.placement


def _lin(*terms: tuple[float, dict[Any, float]]) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for scale, expr in terms:
        for key, v in expr.items():
            out[key] = out.get(key, 0.0) + scale * v
    return out


class _Milp:
    """The integer programs of the module docstring."""

    def __init__(self, pb: _Problem) -> None:
        self.pb = pb
        B, D, devs = pb.B, pb.D, pb.devices
        # (k, e, d): k < B: from node (k, e), d None skips block k, else runs it on d; k == B: e's output to the host
        self.edges: list[tuple[int, int, int | None]] = []
        for k in range(B):
            for e in range(D) if k else (0,):
                self.edges += [(k, e, None)] + [(k, e, d) for d in range(e, D)]
        self.edges += [(B, e, None) for e in range(D)]
        self.lat: dict[Any, float] = {}
        self.loss: dict[Any, float] = {}
        self.maskint: dict[Any, float] = {}
        self.skips: list[dict[Any, float]] = [{} for _ in range(B)]
        self.instr, self.sent, self.flash, self.runs = ([{} for _ in range(D)] for _ in range(4))
        flow: dict[tuple[int, int], dict[Any, float]] = {}
        for j, (k, e, d) in enumerate(self.edges):
            flow.setdefault((k, e), {})[j] = -1.0
            if k == B:
                self.sent[e][j], self.lat[j] = pb.out_wire, pb.out_wire * 8 / devs[e].link_bps
                continue
            flow.setdefault((k + 1, e if d is None else d), {})[j] = 1.0
            if d is None:
                self.skips[k][j], self.loss[j], self.maskint[j] = 1.0, pb.accuracy.drops[k], float(2 ** k)
                continue
            blk = pb.profile.blocks[k]
            self.instr[d][j], self.runs[d][j] = blk.instructions, 1.0
            if D > 1:  # on one device the flash holds every block whatever the mask: a constant
                self.flash[d][j] = blk.weight_bytes
            self.lat[j] = blk.instructions / devs[d].instructions_per_s
            if d != e:
                self.sent[e][j] = pb.act_wire[k]
                self.lat[j] += pb.act_wire[k] * 8 / devs[e].link_bps
        self.flow = [(row, -1.0 if node == (0, 0) else 0.0) for node, row in flow.items()]
        self.above = {m: dl for m, _ in pb.accuracy.measured if (dl := pb.delta(m)) > _DELTA}
        self.below: dict[int, float] = {}  # measured under the estimate: added when the solver returns them

    def _rows(self, chosen: bool, objective: str, use: frozenset[str], latency_cap: float | None,
              accuracy_min: float | None) -> tuple[list[tuple[dict[Any, float], float, float]], dict[Any, float],
                                                          dict[int, float]]:
        """The rows and the accuracy loss (x 1e6) of the additive program (``chosen`` False: y_m >= [s == m]
        for the masks in ``below``) or of the one choosing among the masks in ``above``."""
        pb, dm, inf = self.pb, self.pb.demand, math.inf
        rows = [(row, v, v) for row, v in self.flow]
        y = self.below
        if chosen:  # only the masks meeting the accuracy limits, which then need no rows
            low = max(dm.accuracy_floor if "accuracy_floor" in use else 0.0, accuracy_min or 0.0) - _ACC
            y = {m: dl for m, dl in self.above.items() if pb.accuracy.accuracy(m)[0] >= low}
        loss = _lin((1e6, self.loss), (-1e6, {("y", m): dl for m, dl in y.items()}))
        if chosen:  # exactly one y_m = 1 and then s = m: s_k = sum of y_m over the masks m skipping block k
            rows.append(({("y", m): 1.0 for m in y}, 1.0, 1.0))
            rows += [(_lin((1.0, self.skips[k]), (-1.0, {("y", m): 1.0 for m in y if m >> k & 1})), 0.0, 0.0)
                     for k in range(pb.B)]
        else:  # sum_{i in m} (1 - s_i) + sum_{i not in m} s_i is 0 only when s == m, forcing y_m = 1
            for m in y:
                match = {j: (-1.0 if m >> k & 1 else 1.0) for k in range(pb.B) for j in self.skips[k]}
                rows.append((_lin((1.0, match), (1.0, {("y", m): 1.0})), 1.0 - bin(m).count("1"), inf))
        for on, limit in (("accuracy_floor" in use, dm.accuracy_floor), (accuracy_min is not None, accuracy_min)):
            if on and not chosen:
                rows.append((loss, -inf, 1e6 * (pb.accuracy.acc_full - limit)))
        lat = _lin((1e6, self.lat))
        budget = dm.latency_budget_s if "latency_budget" in use else None
        rows += [(lat, -inf, 1e6 * (budget * (1 + _REL) - pb.lat_const))] if budget is not None else []
        rows += [(lat, -inf, 1e6 * (latency_cap - pb.lat_const))] if latency_cap is not None else []
        for d, dev in enumerate(pb.devices):
            if "memory" in use and pb.profile.arena_bytes > dev.memory_bytes:
                rows.append((self.runs[d], -inf, 0.0))
            if "flash" in use:
                rows.append((self.flash[d], -inf, dev.flash_bytes - pb.const_flash[d]))
            energy = _lin((dev.energy_per_instruction_j, self.instr[d]), (dev.energy_per_byte_j, self.sent[d]))
            e0 = dev.energy_per_instruction_j * pb.const_instr[d]
            k = pb.samples / dev.battery_j
            if "battery" in use:
                rows.append((_lin((k, energy)), -inf, 1 + _REL - k * e0))
            if objective == "energy":
                rows.append((_lin((k, energy), (-1.0, {"t": 1.0})), -inf, -k * e0))
            u = dm.request_rate / (dev.instructions_per_s * dm.max_utilization)
            if "utilization" in use:
                rows.append((_lin((u, self.instr[d])), -inf, 1 + _REL - u * pb.const_instr[d]))
            if objective == "utilization":
                rows.append((_lin((u, self.instr[d]), (-1.0, {"t": 1.0})), -inf, -u * pb.const_instr[d]))
        return rows, loss, y

    def optimize(self, objective: str, use: frozenset[str], latency_cap: float | None = None,
                 accuracy_min: float | None = None) -> tuple[int, tuple[int | None, ...]] | None:
        """The best (mask, placement) for ``objective`` under the constraint groups ``use``, or None: the
        better answer of the additive program and the one choosing among the measured masks above their
        estimate (there the additive program underestimates them)."""
        pb = self.pb
        if "memory" in use and pb.profile.arena_bytes > pb.devices[0].memory_bytes:
            return None
        found = [r for chosen in ((False, True) if self.above else (False,))
                 if (r := self._solve(chosen, objective, use, latency_cap, accuracy_min)) is not None]
        if not found:
            return None
        best = min((_Candidate.of(pb.assess(*r), pb.demand.max_utilization) for r in found),
                   key=lambda c: c.key(objective))
        return best.mask, best.placement

    def _solve(self, chosen: bool, objective: str, use: frozenset[str], latency_cap: float | None,
               accuracy_min: float | None) -> tuple[int, tuple[int | None, ...]] | None:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array

        pb = self.pb
        while True:
            rows, loss, y = self._rows(chosen, objective, use, latency_cap, accuracy_min)
            if any(not row and not lo <= 0 <= hi for row, lo, hi in rows) or (chosen and not y):
                return None
            cols: dict[Any, int] = {j: j for j in range(len(self.edges))}
            cols.update({("y", m): len(cols) + i for i, m in enumerate(y)})
            cols["t"] = n = len(cols)
            n += 1
            entries = [(r, cols[key], v) for r, (row, _, _) in enumerate(rows) for key, v in row.items()]
            A = csr_array(([v for _, _, v in entries], ([r for r, _, _ in entries], [c for _, c, _ in entries])),
                          shape=(len(rows), n))
            goal = {"latency": _lin((1e6, self.lat)), "mask": self.maskint, "accuracy": loss,
                    "energy": {"t": 1.0}, "utilization": {"t": 1.0}}[objective]
            c = np.zeros(n)
            for key, v in goal.items():
                c[cols[key]] += v
            integrality, upper = np.ones(n), np.ones(n)
            integrality[-1], upper[-1] = 0, np.inf
            res = milp(c, integrality=integrality, bounds=Bounds(np.zeros(n), upper),
                       constraints=LinearConstraint(A, [lo for _, lo, _ in rows], [hi for _, _, hi in rows]),
                       options={"mip_rel_gap": 0.0, "presolve": not chosen})  # its presolve is slow on many y
            if res.status == 2:
                return None
            if res.status != 0 or res.x is None:
                raise TinysplitError(f"the integer program was not solved ({res.message}); report this with the inputs")
            mask, placement = 0, [None] * pb.B
            for j, (k, e, d) in enumerate(self.edges):
                if k < pb.B and res.x[j] > 0.5:
                    mask |= 1 << k if d is None else 0
                    placement[k] = d
            delta = pb.delta(mask)
            if not chosen and delta < -_DELTA and mask not in self.below:
                self.below[mask] = delta  # measured under its estimate: a no-good cut if under the floor; solve again
                continue
            return mask, tuple(placement)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _ms(s: float) -> str:
    return f"{1000 * s:.2f} ms"


def _diagnose(pb: _Problem, backend: _Milp | _Enumeration) -> InfeasibleError:
    """Which constraint group cannot be met, adding the groups one at a time."""
    p, dm, devs = pb.profile, pb.demand, pb.devices
    best = pb.assess(*backend.optimize("accuracy", frozenset()))  # type: ignore[misc]
    if best.accuracy < dm.accuracy_floor - _ACC:
        which = "the full model's" if best.mask == 0 else f"mask {best.mask}, skipping {', '.join(best.skipped)}"
        return InfeasibleError(f"the accuracy floor {_pct(dm.accuracy_floor)} cannot be met: the best accuracy of any "
                               f"mask is {_pct(best.accuracy)} ({which}); lower the floor")
    use = frozenset({"accuracy_floor", "memory", "flash"})
    if backend.optimize("latency", use) is None:
        d0, weights = devs[0], sum(b.weight_bytes for b in p.blocks)
        if pb.D == 1:
            return InfeasibleError(f"the head does not fit device '{d0.name}', whatever the mask (the firmware holds "
                                   f"every block): it needs {p.arena_bytes:,} B of RAM for its arena (the device has "
                                   f"{d0.memory_bytes:,} B) and {pb.const_flash[0]:,} B of flash for its weights (it "
                                   f"has {d0.flash_bytes:,} B); use a bigger device or a smaller head")
        if p.arena_bytes > d0.memory_bytes or p.base_weight_bytes > d0.flash_bytes:
            return InfeasibleError(f"device 0 ('{d0.name}') receives the input and runs the base: it needs the arena's "
                                   f"{p.arena_bytes:,} B of RAM (it has {d0.memory_bytes:,} B) and the base's "
                                   f"{p.base_weight_bytes:,} B of flash (it has {d0.flash_bytes:,} B)")
        hosts = [(d, dev) for d, dev in enumerate(devs) if dev.memory_bytes >= p.arena_bytes]
        room = ", ".join(f"'{dev.name}' {dev.flash_bytes - pb.const_flash[d]:,} B" for d, dev in hosts)
        return InfeasibleError(f"the blocks of every mask meeting the accuracy floor {_pct(dm.accuracy_floor)} "
                               f"cannot be placed in order in the flash of the devices whose RAM holds the arena "
                               f"({p.arena_bytes:,} B): flash left for blocks: {room}; the blocks' weights total "
                               f"{weights:,} B; add devices or memory, or lower the floor")
    worst = lambda plan, ratio: max(range(pb.D), key=lambda d: ratio(plan.devices[d]))  # noqa: E731
    e = pb.assess(*backend.optimize("energy", use))  # type: ignore[misc]
    d = worst(e, lambda u: u.horizon_energy_j / u.battery_j)
    if e.devices[d].horizon_energy_j > devs[d].battery_j * (1 + _REL):
        u = e.devices[d]
        return InfeasibleError(f"the battery of device '{u.name}' ({u.battery_j:.4g} J) cannot last the horizon: "
                               f"{pb.samples:,.0f} samples ({dm.request_rate:g}/s for {dm.horizon_s:g} s) need "
                               f"{u.horizon_energy_j:.4g} J there ({u.energy_j:.4g} J each) even with the plan meeting "
                               f"the accuracy floor {_pct(dm.accuracy_floor)} that spares the batteries most (mask "
                               f"{e.mask}); lower the rate or the horizon, or the floor")
    use |= {"battery"}
    found = backend.optimize("utilization", use)
    if found is not None:
        u_plan = pb.assess(*found)
        d = worst(u_plan, lambda u: u.utilization)
        u = u_plan.devices[d]
        if u.utilization > dm.max_utilization * (1 + _REL):
            return InfeasibleError(f"device '{u.name}' cannot keep up with {dm.request_rate:g} samples/s: even the "
                                   f"least loaded plan meeting the accuracy floor {_pct(dm.accuracy_floor)} computes "
                                   f"{_ms(u.compute_s)} per sample there, utilization {u.utilization:.3g} above the "
                                   f"limit {dm.max_utilization:g}; lower the rate or the floor")
        use |= {"utilization"}
        fast = backend.optimize("latency", use)
        if fast is not None and dm.latency_budget_s is not None:
            f = pb.assess(*fast)
            if f.latency.total_s > dm.latency_budget_s * (1 + _REL):
                return InfeasibleError(
                    f"the latency budget {_ms(dm.latency_budget_s)} cannot be met: the fastest plan meeting the "
                    f"accuracy floor {_pct(dm.accuracy_floor)} (and the memory, battery and utilization limits) "
                    f"takes {_ms(f.latency.total_s)} (mask {f.mask}: compute "
                    f"{_ms(f.latency.compute_s)}, transfer {_ms(f.latency.transfer_s)}, host {_ms(f.latency.host_s)})")
    return InfeasibleError("no plan meets the accuracy floor, memory, battery, utilization and latency limits at once "
                           "(each can be met alone); relax one of them")


def evaluate(profile: BlockProfile, accuracy: AccuracyModel, devices: DeviceResources | Sequence[DeviceResources],
             demand: Demand, mask: int, placement: Sequence[int | None] | None = None) -> Plan:
    """The breakdown of a fixed mask (kept blocks on device 0 unless ``placement`` says otherwise);
    an infeasible one is reported in ``violations``, not raised."""
    pb = _Problem(profile, accuracy, devices, demand)
    m = check_mask(mask, pb.B)
    where = placement if placement is not None else [None if m >> k & 1 else 0 for k in range(pb.B)]
    return pb.assess(m, pb.check_placement(m, where))


def latency_of(profile: BlockProfile, device: DeviceResources, demand: Demand, mask: int) -> float:
    """One device: I(mask) / instructions_per_s + wire(output) * 8 / link_bps + host_s."""
    return (profile.instructions(mask) / device.instructions_per_s
            + profile.wire_bytes(profile.output_bytes) * 8 / device.link_bps + demand.host_s)


def _groups(demand: Demand) -> frozenset[str]:
    return frozenset(c for c in CONSTRAINTS if c != "latency_budget" or demand.latency_budget_s is not None)


OBJECTIVES = ("latency", "accuracy")


def _objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def plan(profile: BlockProfile, accuracy: AccuracyModel, devices: DeviceResources | Sequence[DeviceResources],
         demand: Demand, objective: str = "latency") -> Plan:
    """The best feasible mask and placement by the integer program; InfeasibleError names the
    constraint that cannot be met. ``objective``: "latency" (the least latency; ties: higher accuracy,
    then smaller mask) or "accuracy" (the highest accuracy the resources allow, the paper's other
    objective: the latency budget, battery, utilization and memory decide how many blocks run; ties:
    the least latency, then the smaller mask)."""
    start = time.perf_counter()
    _objective(objective)
    pb = _Problem(profile, accuracy, devices, demand)
    ilp, use = _Milp(pb), _groups(demand)
    if objective == "latency":
        first = ilp.optimize("latency", use)
        if first is None:
            raise _diagnose(pb, ilp)
        cap = pb.assess(*first).latency.total_s * (1 + _REL)
        second = ilp.optimize("accuracy", use, latency_cap=cap) or first
        floor = pb.assess(*second).accuracy - _ACC
    else:
        first = ilp.optimize("accuracy", use)
        if first is None:
            raise _diagnose(pb, ilp)
        floor = pb.assess(*first).accuracy - _ACC
        second = ilp.optimize("latency", use, accuracy_min=floor) or first
        cap = pb.assess(*second).latency.total_s * (1 + _REL)
    third = ilp.optimize("mask", use, latency_cap=cap, accuracy_min=floor) or second
    return replace(pb.assess(*third), solver=MILP, solve_s=time.perf_counter() - start)


def candidate_count(blocks: int, devices: int) -> int:
    """Masks times monotone placements of their kept blocks: sum_n C(B, n) * C(n + D - 1, D - 1)."""
    return sum(math.comb(blocks, n) * math.comb(n + devices - 1, devices - 1) for n in range(blocks + 1))


def exhaustive(profile: BlockProfile, accuracy: AccuracyModel, devices: DeviceResources | Sequence[DeviceResources],
               demand: Demand, objective: str = "latency") -> Plan:
    """``plan``'s answer by trying every mask and monotone placement (small heads only)."""
    start = time.perf_counter()
    _objective(objective)
    pb = _Problem(profile, accuracy, devices, demand)
    count = candidate_count(pb.B, pb.D)
    if pb.B > MAX_EXHAUSTIVE_BLOCKS or count > MAX_EXHAUSTIVE_CANDIDATES:
        raise InputError(f"{pb.B} blocks on {pb.D} device(s) make {count:,} masks and placements; exhaustive search "
                         f"takes at most {MAX_EXHAUSTIVE_BLOCKS} blocks and {MAX_EXHAUSTIVE_CANDIDATES:,} candidates: "
                         "use plan()")
    every = [_Candidate.of(pb.assess(m, p), pb.demand.max_utilization) for m, p in pb.candidates()]
    ok = [c for c in every if not c.violations]
    if not ok:
        raise _diagnose(pb, _Enumeration(every))
    if objective == "latency":
        fastest = min(c.latency_s for c in ok)
        tied = [c for c in ok if c.latency_s <= fastest * (1 + _REL)]
        best_acc = max(c.accuracy for c in tied)
        best = min((c for c in tied if c.accuracy >= best_acc - _ACC), key=lambda c: (c.mask, c.latency_s))
    else:
        best_acc = max(c.accuracy for c in ok)
        tied = [c for c in ok if c.accuracy >= best_acc - _ACC]
        fastest = min(c.latency_s for c in tied)
        best = min((c for c in tied if c.latency_s <= fastest * (1 + _REL)), key=lambda c: (c.mask, c.latency_s))
    return replace(pb.assess(best.mask, best.placement), solver="exhaustive", solve_s=time.perf_counter() - start)
