"""What a ReBEL device sends, computed in Python: the reference for the C app ``rebel`` (whose frames
must be byte-identical) and the simulated devices of tests.

Per sample exactly one frame, seq = the INPUT's seq, part 0 of 1: with the int8 confidences q_c
(output channels [D, D + C)) and c* the FIRST index of their maximum, an EARLY_LABEL (label c*,
confidence q_{c*} + 128) when q_{c*} >= q_t, else a LATENT frame with z (output channels [0, D)) as D
int8 bytes. q_t is the device's integer threshold (RebelPlan.threshold_q; 128 = never early).
"""

from __future__ import annotations

import numpy as np

from tinysplit.methods.rebel.plan import RebelPlan
from tinysplit.wire.frame import FrameType, encode_frame
from tinysplit.wire.payloads import CAP_REBEL, CAP_UDP, Chunk, EarlyLabel, Hello, make_frame


def device_decision(out_q: np.ndarray, plan: RebelPlan, q_t: int) -> tuple[bool, int, int]:
    """(early, c*, q_{c*}) for one sample's int8 output, as the device computes them."""
    flat = np.asarray(out_q, dtype=np.int8).reshape(-1)
    if flat.size != plan.output_bytes:
        raise ValueError(f"device output has {flat.size} values, the plan expects {plan.latent} + {plan.classes}")
    conf = flat[plan.latent:].astype(np.int32)
    c = int(conf.argmax())
    return bool(conf[c] >= q_t), c, int(conf[c])


def sample_frames(out_q: np.ndarray, plan: RebelPlan, q_t: int, device: int, bundle_id: int, seq: int) -> list[bytes]:
    """The one encoded frame a device sends for a sample whose device model output is ``out_q``."""
    early, c, q = device_decision(out_q, plan, q_t)
    if early:
        frame = make_frame(FrameType.EARLY_LABEL, EarlyLabel(c, q + 128), device, bundle_id, seq)
    else:
        z = np.asarray(out_q, dtype=np.int8).reshape(-1)[:plan.latent]
        frame = make_frame(FrameType.LATENT, Chunk(z.tobytes()), device, bundle_id, seq)
    return [encode_frame(frame)]


def hello(plan: RebelPlan, board: str, input_bytes: int, udp: bool = False) -> Hello:
    """The HELLO a ReBEL device sends: TS_CAP_REBEL (| TS_CAP_UDP), output_bytes D + C, no units."""
    return Hello(board, CAP_REBEL | (CAP_UDP if udp else 0), input_bytes, plan.output_bytes, 0, 0)
