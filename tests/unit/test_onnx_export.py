"""ONNX export (`esc models export`): parity with onnxruntime on the golden checkpoints, any input size, fp16,
metadata, atomic output, and the message when the extra is missing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esc_cli.api.loading import load_model
from esc_cli.cli import main
from tests.conftest import GOLDEN

pytestmark = pytest.mark.onnx


def _session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _max_error(session, network, shape, dtype=torch.float32) -> float:
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(sum(shape))).to(dtype)
    with torch.no_grad():
        expected = network(image).float().numpy()
    actual = session.run(None, {"image": image.numpy()})[0]
    assert actual.shape == expected.shape
    return float(np.abs(actual.astype(np.float32) - expected).max())


@pytest.mark.parametrize("name", ["esc_light_x4", pytest.param("esc_fp_x3", marks=pytest.mark.slow),
                                  pytest.param("esc_real_x4", marks=pytest.mark.slow),
                                  pytest.param("esc_real_dysample_x4", marks=pytest.mark.slow)])  # fmt: skip
def test_golden_checkpoint_parity_at_two_sizes(tmp_path, name):
    from esc_cli.api.export import export_onnx

    path = GOLDEN / f"{name}.pth"
    result = export_onnx(str(path), tmp_path / "m.onnx")
    assert result.max_abs_error is not None and result.max_abs_error <= 1e-4
    session, network = _session(result.path), load_model(path)
    for shape in [(32, 64), (37, 45)]:  # the window is 32: one size a multiple of it, one not
        assert _max_error(session, network, shape) <= 1e-4, shape


def test_any_size_half_metadata_and_atomic_output(tmp_path, capsys):
    import onnx

    out = tmp_path / "small.onnx"
    assert main(["models", "export", "default-x2", str(out), "--half"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["esc.model"] == "default-x2" and props["esc.scale"] == "2"
    session, network = _session(out), load_model_half("default-x2")
    for shape in [(1, 1), (1, 7), (5, 3), (20, 33)]:
        assert _max_error(session, network, shape, torch.float16) <= 5e-2, shape
    before = out.read_bytes()
    assert main(["models", "export", "default-x2", str(out)]) == 3  # exists: refused, unchanged
    assert out.read_bytes() == before
    assert "--overwrite" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if "esc-tmp" in p.name]


def load_model_half(name: str):
    from esc_cli.api.models import open_model

    return open_model(name, dtype=torch.float16)


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    assert main(["models", "export", "default-x2", str(tmp_path / "m.onnx")]) == 3
    err = capsys.readouterr().err
    assert "pip install 'esc-cli[onnx]'" in err and "onnxscript" in err
    assert not (tmp_path / "m.onnx").exists()


def test_bad_arguments_are_usage_errors(tmp_path):
    assert main(["models", "export", "default-x2", str(tmp_path / "m.txt")]) == 2
    assert main(["models", "export", "default-x2", str(tmp_path / "m.onnx"), "--opset", "3"]) == 2
    assert main(["models", "export", "no-such-model", str(tmp_path / "m.onnx")]) == 2
