"""What a RoCoIn device sends, computed in Python: the reference for the C app ``rocoin`` (whose
frames must be byte-identical) and the simulated devices of tests.

For each INPUT (seq) a device of group k runs student_k and sends its portion, the n_k int8 values of
its output in order, as ROCOIN_PORTION frames (payload: u16 partition k, u16 partitions_total K, then
the chunk) with its own wire device id and the INPUT's seq. A portion of at most MAX_PAYLOAD - 4
bytes is one frame (part 0 of 1); a longer one is split into consecutive chunks of MAX_PAYLOAD - 4
bytes (the last shorter), part_index 0.. of part_count.
"""

from __future__ import annotations

import numpy as np

from tinysplit.methods.rocoin.bundle import RocoinPlan
from tinysplit.methods.rocoin.latency import PORTION_CHUNK
from tinysplit.wire.frame import FrameType, encode_frame
from tinysplit.wire.payloads import CAP_ROCOIN, CAP_UDP, Hello, RocoinPortion, make_frame


def portion_frames(out_q: np.ndarray, k: int, partitions_total: int, device_id: int, bundle_id: int,
                   seq: int) -> list[bytes]:
    """The encoded ROCOIN_PORTION frames of one sample's portion ``out_q`` (student k's int8 output)."""
    data = np.asarray(out_q, dtype=np.int8).reshape(-1).tobytes()
    if not data:
        raise ValueError("a portion holds at least one value")
    if not 0 <= k < partitions_total:
        raise ValueError(f"partition {k} is not in 0..{partitions_total - 1}")
    chunks = [data[i:i + PORTION_CHUNK] for i in range(0, len(data), PORTION_CHUNK)]
    return [encode_frame(make_frame(FrameType.ROCOIN_PORTION, RocoinPortion(k, partitions_total, c), device_id,
                                    bundle_id, seq, i, len(chunks)))
            for i, c in enumerate(chunks)]


def device_frames(plan: RocoinPlan, device_id: int, out_q: np.ndarray, bundle_id: int, seq: int) -> list[bytes]:
    """The frames device ``device_id`` of ``plan`` sends for one sample (its partition from the plan)."""
    k = plan.partition_of(device_id)
    return portion_frames(out_q, k, plan.partitions_total, device_id, bundle_id, seq)


def hello(plan: RocoinPlan, device_id: int, board: str, input_bytes: int, udp: bool = False) -> Hello:
    """The HELLO a RoCoIn device sends: TS_CAP_ROCOIN (| TS_CAP_UDP), output_bytes n_k, units_total K,
    unit_bytes 0."""
    k = plan.partition_of(device_id)
    return Hello(board, CAP_ROCOIN | (CAP_UDP if udp else 0), input_bytes, plan.students[k].values,
                 plan.partitions_total, 0)
