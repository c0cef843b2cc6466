"""One conformance test per split method: the method's device simulator -> the real TailServer (its
registered assembler, over a loop:// COBS stream) -> predictions, equal label for label to the
method's Python reference pipeline. A method added to tinysplit.methods.METHODS without a case here
fails ``test_every_split_method_has_a_case``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tinysplit.host_server.server import ServerConfig, TailServer
from tinysplit.host_server.sinks import MemorySink
from tinysplit.host_server.transports import open_transport
from tinysplit.host_server.transports.loop import loop_peer
from tinysplit.manifest import load_manifest
from tinysplit.methods import METHODS
from tinysplit.reference import device_outputs, heldout, quantized_inputs
from tinysplit.wire import cobs_encode

N = 40


@dataclass
class Case:
    """For one setting: every sample's frames (as a device sends them) and the reference labels."""

    setting: str
    frames: list[list[bytes]]  # per sample
    labels: np.ndarray
    record_check: Callable[[dict], bool] = lambda r: True
    deadline_s: float = 5.0  # the server's deadline per sample
    deadline_misses: int = 0  # samples that must complete at their deadline (parts missing)
    counters_check: Callable[[dict], bool] = lambda c: True


def nair_cases(bundle: Path) -> list[Case]:
    from tinysplit.methods.nair.devicesim import slice_frames
    from tinysplit.methods.nair.reference import labels_at_budgets
    from tinysplit.methods.nair.slices import plan_for

    m = load_manifest(bundle)
    x, _ = heldout(bundle, m)
    feats = device_outputs(bundle, m, quantized_inputs(m, x[:N]))
    plan = plan_for(m)
    budgets = [1, 3, plan.units_total // 2, plan.units_total]
    ref = labels_at_budgets(bundle, budgets, features_q=feats)
    bid = int(m.bundle_id, 16)
    return [Case(f"budget {b}", [slice_frames(plan, feats[i], b, 5, bid, i) for i in range(N)], ref[b],
                 lambda r, b=b: r["units_received"] == b and r["complete"]) for b in budgets]


def rebel_cases(bundle: Path) -> list[Case]:
    """Three thresholds: 0 (every sample early), the median int8 confidence's (some early, some remote)
    and 1 (every sample remote on this briefly trained model); the path of every sample is checked too."""
    from tinysplit.methods.rebel.devicesim import sample_frames
    from tinysplit.methods.rebel.plan import plan_for
    from tinysplit.methods.rebel.reference import labels_at_thresholds

    m = load_manifest(bundle)
    plan = plan_for(m)
    x, _ = heldout(bundle, m)
    outs = device_outputs(bundle, m, quantized_inputs(m, x[:N])).reshape(N, -1)
    mid = float(np.median(plan.confidence(outs[:, plan.latent:].max(1))))
    thresholds = [0.0, round(mid, 4), 1.0]
    ref = labels_at_thresholds(bundle, thresholds, outputs_q=outs)
    assert 0 < ref[thresholds[1]].early.sum() < N, "the middle threshold must send some samples each way"
    bid = int(m.bundle_id, 16)
    cases = []
    for t in thresholds:
        r = ref[t]

        def check(rec, r=r):
            early = bool(r.early[rec["sample"]])
            return rec["early"] == early and rec["path"] == ("device" if early else plan.tail) and rec["complete"]

        cases.append(Case(f"threshold {t} (coverage {r.coverage:.2f})",
                          [sample_frames(outs[i], plan, r.threshold_q, 7, bid, i) for i in range(N)], r.labels,
                          check))
    return cases


def rocoin_cases(bundle: Path) -> list[Case]:
    """Every device of every group sends its portion (in plan order: the first replica of each group
    wins, the second is a replica or, once the sample is complete, late); then per sample a seeded random
    set of devices fails (0 .. N-1 of them, never all), some groups' devices answer in reverse order,
    and a partition whose devices all failed is zero-filled at the deadline. Labels must equal the
    reference for exactly the partitions that arrived."""
    from tinysplit.methods.rocoin.bundle import plan_for
    from tinysplit.methods.rocoin.devicesim import device_frames
    from tinysplit.methods.rocoin.reference import labels_with_partitions, student_outputs

    m = load_manifest(bundle)
    plan = plan_for(m)
    bid = int(m.bundle_id, 16)
    k_total = plan.partitions_total
    outs = student_outputs(bundle, N, manifest=m)
    rng = np.random.default_rng(12)
    cases = []
    for setting in ("all devices", "failures"):
        frames, arrived, winners = [], np.zeros((N, k_total), bool), []
        for i in range(N):
            alive = list(plan.devices)
            if setting == "failures":
                down = set(rng.choice(len(alive), int(rng.integers(0, len(alive))), replace=False).tolist())
                alive = [d for j, d in enumerate(alive) if j not in down]
                if rng.random() < 0.5:
                    alive = alive[::-1]  # replicas in another order: the other device wins
            sample, win = [], {}
            for d in alive:
                sample += device_frames(plan, d.device_id, outs[d.partition][i], bid, i)
                win.setdefault(d.partition, d.device_id)
                arrived[i, d.partition] = True
            frames.append(sample)
            winners.append(win)
        ref = labels_with_partitions(bundle, arrived, outputs_q=outs)
        misses = int((~arrived.all(axis=1)).sum())
        assert setting == "all devices" or 0 < misses < N, "some samples must miss partitions, some not"

        def check(rec, arrived=arrived, winners=winners):
            i = rec["sample"]
            got = [k for k in range(k_total) if arrived[i, k]]
            return (rec["partitions"] == got and rec["missing"] == [k for k in range(k_total) if k not in got]
                    and rec["answered_by"] == {str(k): winners[i][k] for k in got}
                    and rec["complete"] == (len(got) == k_total))

        sent = sum(len(f) for f in frames)
        cases.append(Case(f"{setting} ({misses} samples missing partitions)", frames, ref, check,
                          deadline_s=0.5 if misses else 5.0, deadline_misses=misses,
                          counters_check=lambda c, sent=sent, used=int(arrived.sum()): (
                              c["portions"] == used and c["portions"] + c["replica_portions"] + c["late_portions"]
                              == sent and c["replica_portions"] + c["late_portions"] > 0)))
    return cases


def adaptive_cases(bundle: Path) -> list[Case]:
    """Masks 0, each block alone and all blocks: the device simulator sends the TFLite Micro output of
    the head with those blocks removed; labels equal the reference's and every record carries its mask
    and instruction count."""
    from tinysplit.methods.adaptive_resnet.bundle import layout_for
    from tinysplit.methods.adaptive_resnet.devicesim import sample_frames
    from tinysplit.methods.adaptive_resnet.reference import device_outputs as masked_outputs
    from tinysplit.methods.adaptive_resnet.reference import labels_for_masks

    m = load_manifest(bundle)
    lay = layout_for(m)
    x, _ = heldout(bundle, m)
    xq = quantized_inputs(m, x[:N])
    masks = [0, *(1 << i for i in range(lay.blocks)), (1 << lay.blocks) - 1]
    ref = labels_for_masks(bundle, masks, n=N)
    bid = int(m.bundle_id, 16)
    cases = []
    for mask in masks:
        outs = masked_outputs(bundle, mask, xq)
        instr = 1000 + mask

        def check(rec, mask=mask, instr=instr):
            return rec["skip_mask"] == mask and rec["instructions"] == instr and rec["complete"]

        cases.append(Case(f"mask 0x{mask:x}", [sample_frames(outs[i], lay, mask, instr, 3, bid, i) for i in range(N)],
                          ref[mask], check))
    return cases


CASES: dict[str, Callable[[Path], list[Case]]] = {"nair": nair_cases, "rebel": rebel_cases, "rocoin": rocoin_cases,
                                                  "adaptive_resnet": adaptive_cases}
BUNDLES = {"nair": "digits_bundle", "rebel": "rebel_bundle", "rocoin": "rocoin_bundle",
           "adaptive_resnet": "adaptive_bundle"}  # each case's session fixture


def test_every_split_method_has_a_case():
    assert set(CASES) == set(BUNDLES) == {n for n, m in METHODS.items() if m.split}


@pytest.mark.parametrize("method", sorted(CASES))
def test_device_simulator_through_the_server_equals_the_reference(method: str, request):
    bundle = request.getfixturevalue(BUNDLES[method])
    assert load_manifest(bundle).method == method
    for case in CASES[method](bundle):
        sink = MemorySink()
        peer = loop_peer(f"conf-{method}")

        async def main():
            server = TailServer(ServerConfig(bundle, [], deadline_s=case.deadline_s), sink,
                                transports=[open_transport(f"loop://conf-{method}")])
            await server.start()
            try:
                for frames in case.frames:
                    for f in frames:
                        peer.write(cobs_encode(f) + b"\x00")
                    await asyncio.sleep(0)
                for _ in range(500):
                    if len(sink.records) >= len(case.frames):
                        break
                    await asyncio.sleep(0.01)
            finally:
                await server.stop()
            return server

        server = asyncio.run(main())
        got = sorted(sink.records, key=lambda r: r["sample"])
        assert [r["sample"] for r in got] == list(range(len(case.frames))), case.setting
        assert np.array_equal([r["label"] for r in got], case.labels), case.setting
        assert all(case.record_check(r) for r in got), case.setting
        assert server.metrics.dropped == 0, case.setting
        assert server.metrics.counters["deadline_misses"] == case.deadline_misses, case.setting
        assert case.counters_check(server.metrics.counters), (case.setting, server.metrics.counters)
