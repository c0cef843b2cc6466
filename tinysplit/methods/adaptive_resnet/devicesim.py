"""What an Adaptive ResNet device sends, computed in Python: the reference for the C app
``adaptive_resnet`` (whose frames must be byte-identical) and the simulated devices of tests.

Per sample, the head's int8 output (run with skip mask ``mask``) in ceil(n / 1016) ADAPTIVE_OUTPUT
frames, seq = the INPUT's, parts 0..count-1 in order, each carrying the mask and the inference's
instruction count before its chunk of the output.
"""

from __future__ import annotations

import numpy as np

from tinysplit.methods.adaptive_resnet.bundle import AdaptiveLayout
from tinysplit.wire.frame import FrameType, encode_frame
from tinysplit.wire.payloads import ADAPTIVE_OUTPUT_CHUNK, CAP_SKIP, CAP_UDP, AdaptiveOutput, Hello, make_frame


def sample_frames(out_q: np.ndarray, layout: AdaptiveLayout, mask: int, instructions: int, device: int,
                  bundle_id: int, seq: int) -> list[bytes]:
    """The encoded frames a device sends for one sample whose head output (with ``mask``) is ``out_q``."""
    data = np.asarray(out_q, dtype=np.int8).reshape(-1).tobytes()
    if len(data) != layout.output_bytes:
        raise ValueError(f"head output has {len(data)} bytes, the bundle's {layout.output_bytes}")
    layout.check_mask(mask)
    chunks = [data[i:i + ADAPTIVE_OUTPUT_CHUNK] for i in range(0, len(data), ADAPTIVE_OUTPUT_CHUNK)]
    return [encode_frame(make_frame(FrameType.ADAPTIVE_OUTPUT, AdaptiveOutput(mask, instructions, c), device,
                                    bundle_id, seq, k, len(chunks))) for k, c in enumerate(chunks)]


def hello(layout: AdaptiveLayout, board: str, input_bytes: int, udp: bool = False) -> Hello:
    """The HELLO an Adaptive ResNet device sends: TS_CAP_SKIP (| TS_CAP_UDP), its output bytes, and its
    skippable block count as units_total."""
    return Hello(board, CAP_SKIP | (CAP_UDP if udp else 0), input_bytes, layout.output_bytes, layout.blocks, 0)
