"""Each conversion stage on its own: torch -> ONNX -> SavedModel -> int8 TFLite, and the reader."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
from torch import nn

from tinysplit.errors import ConversionError, InputError
from tinysplit.exporter import convert
from tinysplit.exporter.ops import SUPPORTED_OPS, torch_layer_of
from tinysplit.exporter.tflite_model import check_fully_int8, parse_tflite
from tinysplit.exporter.verify import compare_int8, cosine_per_sample


class Tiny(nn.Module):
    """3-channel input: the case where onnx2tf would try to download its sample file."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(),
                                  nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.ReLU())

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def tiny_stages(tmp_path_factory):
    torch.manual_seed(0)
    m = Tiny().eval()
    x = np.random.default_rng(0).random((32, 3, 16, 16), dtype=np.float32)
    work = tmp_path_factory.mktemp("stages")
    log = work / "convert.log"
    onnx_model = convert.torch_to_onnx(m, x, work / "tiny.onnx", ["input"], ["out"], log)
    # No network during conversion: any connect() attempt fails the test.
    real_connect = socket.socket.connect

    def no_network(self, addr):
        raise AssertionError(f"network access attempted: {addr}")

    socket.socket.connect = no_network
    try:
        saved = convert.onnx_to_saved_model(onnx_model, work / "sm", x.transpose(0, 2, 3, 1), log)
    finally:
        socket.socket.connect = real_connect
    tfl = convert.saved_model_to_int8_tflite(saved, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), log)
    return m, x, onnx_model, saved, tfl


def test_torch_to_onnx_keeps_layer_names(tiny_stages):
    m, x, onnx_model, _, _ = tiny_stages
    assert onnx_model.path.is_file()
    convs = [n for n in onnx_model.nodes if n.op_type == "Conv"]
    assert [n.torch_layer for n in convs] == ["body.0", "body.3"]
    out = convert.onnx_outputs(onnx_model.path, [x[:1]])[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, m(torch.from_numpy(x[:1])).numpy(), atol=1e-5)


def test_onnx_to_saved_model_offline(tiny_stages):
    _, _, _, saved, _ = tiny_stages
    assert (saved / "saved_model.pb").is_file()
    assert (saved.parent / convert.ONNX2TF_SAMPLE_FILE).is_file()  # the guard that keeps it offline


def test_int8_tflite_is_fully_int8(tiny_stages):
    _, _, _, _, tfl = tiny_stages
    model = parse_tflite(tfl)
    check_fully_int8(model)
    assert set(model.ops) <= SUPPORTED_OPS
    assert "DEPTHWISE_CONV_2D" in model.ops
    dw = next(op for op in model.operators if op.opcode == "DEPTHWISE_CONV_2D")
    w = model.tensors[dw.inputs[1]]
    assert w.quantized_dimension == 3 and len(w.scales) == 8
    assert model.input_tensors()[0].shape == (1, 16, 16, 3)  # NHWC


def test_parse_tflite_rejects_garbage():
    with pytest.raises(InputError, match="not a valid .tflite"):
        parse_tflite(b"\x00" * 7)


def test_torch_to_onnx_failure_is_a_conversion_error(tmp_path):
    class Bad(nn.Module):
        def forward(self, x):
            return x.numpy()  # cannot be traced

    with pytest.raises(ConversionError, match="torch -> ONNX failed"):
        convert.torch_to_onnx(Bad(), np.zeros((1, 1, 4, 4), np.float32), tmp_path / "bad.onnx",
                              ["input"], ["out"], tmp_path / "log")


def test_tail_to_onnx_takes_nhwc_and_matches_torch(tmp_path):
    torch.manual_seed(1)
    tail = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = np.random.default_rng(1).random((5, 3, 3, 4), dtype=np.float32)  # NHWC
    onnx_model, diff = convert.tail_to_onnx(tail, [x], tmp_path / "tail.onnx", ["head"], tmp_path / "log")
    assert diff < 1e-5
    got = convert.onnx_outputs(onnx_model.path, [x])[0]  # dynamic batch: 5 samples at once
    with torch.no_grad():
        want = tail(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_layer_name_parsing_and_metrics():
    assert torch_layer_of("/conv2/conv2.0/Conv") == "conv2.0"
    assert torch_layer_of("/Resize") == ""
    c = compare_int8(np.array([1, 2, 3], np.int8), np.array([1, 3, 3], np.int8))
    assert (c.identical_fraction, c.max_lsb_diff, c.values) == (2 / 3, 1, 3)
    cos = cosine_per_sample(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert cos.tolist() == [1.0, 1.0]
