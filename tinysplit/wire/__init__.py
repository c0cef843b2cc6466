"""The tinysplit wire protocol (docs/wire-protocol.md): frames, COBS framing, typed payloads."""

from tinysplit.wire.cobs import CobsDeframer, cobs_decode, cobs_encode
from tinysplit.wire.frame import (HEADER_SIZE, MAGIC, MAX_FRAME, MAX_PAYLOAD, TRAILER_SIZE, VERSION, DecodeError,
                                  Frame, FrameType, decode_frame, encode_frame)

__all__ = ["CobsDeframer", "DecodeError", "Frame", "FrameType", "HEADER_SIZE", "MAGIC", "MAX_FRAME",
           "MAX_PAYLOAD", "TRAILER_SIZE", "VERSION", "cobs_decode", "cobs_encode", "decode_frame", "encode_frame"]
