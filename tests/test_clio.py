"""CLIO-style progressive training (the comparison variant): one tail per width, earlier units frozen."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from test_nair import small_split
from tinysplit.errors import InputError, ManifestError
from tinysplit.methods.nair.clio import progressive_tails, tail_parameters
from tinysplit.methods.nair.order import RetuneConfig, prepare_variant


def test_each_step_trains_only_its_own_unit_and_a_tail_of_its_own():
    head, tail = small_split()
    frozen_before = {n: p.detach().clone() for n, p in head.named_parameters() if not n.startswith("2.")}
    x = np.random.default_rng(0).normal(size=(24, 1, 8, 8)).astype(np.float32)
    y = np.arange(24, dtype=np.int64) % 3
    snaps = []  # the split conv's weights after each width (log is called once per width)
    order, tails, info = progressive_tails(head, tail, "2", "0", x, y, 2, RetuneConfig(epochs=2, batch_size=8),
                                           log=lambda m: snaps.append(head.get_submodule("2").weight.detach().clone()))
    assert len(tails) == len(snaps) == 4 and len({id(t) for t in tails}) == 4
    for j in range(1, 4):  # between width j and j+1 only unit j+1's rows (channels 2j, 2j+1) move
        changed = (snaps[j] != snaps[j - 1]).flatten(1).any(1).tolist()
        assert not any(changed[:2 * j] + changed[2 * j + 2:]), (j, changed)  # (a channel behind a dead ReLU
        assert any(changed[2 * j:2 * j + 2]), (j, changed)                     # gets no gradient at all)
    for n, p in head.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
        assert p.requires_grad  # restored for the caller
    assert isinstance(head[3], torch.nn.Identity)  # the split's BatchNorm was folded, as for NAIR
    assert info["tail_parameters"] == 4 * tail_parameters([tail]) == tail_parameters(tails)
    assert info["tails"] == 4 and len(info["loss_per_width"]) == 4
    assert len(order.unit_order) == 4
    with pytest.raises(InputError, match="at least 1 epoch"):
        progressive_tails(*small_split(), "2", "0", x, y, 2, RetuneConfig(epochs=0))
    with pytest.raises(InputError, match="use tinysplit.methods.nair.clio.progressive_tails"):
        prepare_variant(*small_split(), "2", "0", "clio", x, y)


def test_clio_variant_exports_one_tail_per_width_and_the_server_runs_it(tmp_path, digits_nair):
    """nair-eval's clio variant as deployed: one ONNX tail per width in the bundle; the reference pipeline
    runs tail j on j units, and so does the server (its NAIR assembler picks the tail by units received)."""
    import asyncio

    from tinysplit.host_server.server import ServerConfig, TailServer
    from tinysplit.host_server.sinks import MemorySink
    from tinysplit.host_server.transports import open_transport
    from tinysplit.manifest import load_manifest
    from tinysplit.methods.nair.devicesim import slice_frames
    from tinysplit.methods.nair.evaluate import evaluate
    from tinysplit.methods.nair.reference import labels_at_budgets, tail_per_units
    from tinysplit.methods.nair.slices import plan_for, zero_filled
    from tinysplit.reference import device_outputs, heldout, quantized_inputs, tail_logits, tail_session

    report = evaluate(digits_nair, tmp_path, ("l1_order", "clio"), RetuneConfig(epochs=1))
    clio, l1 = report["variants"]["clio"], report["variants"]["l1_order"]
    assert clio["retune"]["tail_parameters"] == 16 * l1["retune"]["tail_parameters"]
    for b in (1, 2, 4):  # progressive training makes small widths usable
        assert clio["accuracy"][b - 1] > l1["accuracy"][b - 1] + 0.15, (b, clio["accuracy"], l1["accuracy"])
    bundle = tmp_path / "bundles" / "clio"
    m = load_manifest(bundle)
    assert [t.name for t in m.host_tails] == [f"tail_{j}" for j in range(1, 17)]
    assert m.method_data["nair"]["tail_per_units"] == [f"tail_{j}" for j in range(1, 17)]
    x, _ = heldout(bundle, m)
    fq = device_outputs(bundle, m, quantized_inputs(m, x[:40]))
    plan = plan_for(m)
    got = labels_at_budgets(bundle, [3], features_q=fq)[3]
    padded = np.stack([zero_filled(plan, f, 3) for f in fq])
    want = tail_logits(bundle, m, padded, tail_session(bundle, m, "tail_3")).argmax(1)
    other = tail_logits(bundle, m, padded, tail_session(bundle, m, "tail_16")).argmax(1)
    assert np.array_equal(got, want) and not np.array_equal(want, other)

    async def serve(budget: int) -> list[dict]:
        sink = MemorySink()
        server = TailServer(ServerConfig(bundle=bundle, listen=[], deadline_s=30), sink,
                            transports=[open_transport("loop://clio")])
        await server.start()
        try:
            for i, f in enumerate(fq):
                for frame in slice_frames(plan, f, budget, 1, int(m.bundle_id, 16), i):
                    server.on_frame(server.transports[0], frame, "clio")
        finally:
            await server.stop()
        assert server.metrics.dropped == 0
        return sorted(sink.records, key=lambda r: r["sample"])

    for b in (3, 16):
        records = asyncio.run(serve(b))
        assert [r["path"] for r in records] == [f"tail_{b}"] * len(fq)
        assert [r["label"] for r in records] == labels_at_budgets(bundle, [b], features_q=fq)[b].tolist()
    for bad in (["tail_1"] * 15, ["tail_1"] * 15 + ["nope"], "tail_1"):
        md = copy.deepcopy(m.method_data)
        md["nair"]["tail_per_units"] = bad
        with pytest.raises(ManifestError, match="must list 16 host tail names"):
            tail_per_units(dataclasses.replace(m, method_data=md))
