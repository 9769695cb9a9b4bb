"""Checkpoint files: every accepted form, and every way a file can be wrong."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

import esc_cli
from esc_cli.errors import CheckpointError, EscError, UnsafeCheckpointError


@pytest.fixture
def state(tiny_model):
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


def _same_output(a, b):
    x = torch.rand(1, 3, 9, 11)
    with torch.inference_mode():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("form", ["params_ema", "params", "bare", "safetensors", "mapping"])
def test_every_checkpoint_form_loads(tmp_path, tiny_model, state, form):
    if form == "safetensors":
        path = tmp_path / "m.safetensors"
        save_file(state, str(path))
        source = path
    elif form == "mapping":
        source = state
    else:
        path = tmp_path / "m.pth"
        torch.save(state if form == "bare" else {form: state, "other": {"x": torch.zeros(1)}}, path)
        source = path
    model = esc_cli.load_model(source)
    assert model.config == tiny_model.config and not model.training
    assert _same_output(model, tiny_model)


def test_params_ema_is_preferred_over_params(tmp_path, tiny_model, state):
    junk = {k: torch.zeros_like(v) for k, v in state.items()}
    torch.save({"params": junk, "params_ema": state}, tmp_path / "m.pth")
    assert _same_output(esc_cli.load_model(tmp_path / "m.pth"), tiny_model)


def test_dtype_and_device_are_applied(state):
    model = esc_cli.load_model(state, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_missing_key_is_named(state):
    del state["blocks.0.attn.to_out.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.0\.attn\.to_out\.bias"):
        esc_cli.load_model(state)


def test_unexpected_key_is_named(state):
    state["blocks.0.extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.0\.extra\.weight"):
        esc_cli.load_model(state)


def test_misshaped_key_is_named(state):
    state["last.weight"] = torch.zeros(16, 16, 5, 5)
    with pytest.raises(CheckpointError, match=r"mis-shaped keys: last\.weight \(16, 16, 5, 5\)"):
        esc_cli.load_model(state)


def test_unrelated_state_dict_is_refused():
    with pytest.raises(CheckpointError, match="not an ESC checkpoint"):
        esc_cli.load_model({"fc.weight": torch.zeros(2, 2)})


@pytest.mark.parametrize("content", [b"hello, not a checkpoint\n", bytes(range(256)) * 4, b""])
def test_a_file_that_is_not_a_checkpoint_gets_a_clear_error(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        esc_cli.load_model(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_fake_safetensors_and_missing_file(tmp_path):
    fake = tmp_path / "w.safetensors"
    fake.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        esc_cli.load_model(fake)
    with pytest.raises(CheckpointError, match="no such file"):
        esc_cli.load_model(tmp_path / "absent.pth")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path, state):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": state, "hook": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        esc_cli.load_model(path)
    assert not marker.exists()
    # The same with a raw pickle stream rather than torch's zip container.
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        esc_cli.load_model(raw)
    assert not marker.exists()


def test_all_errors_share_one_base():
    assert issubclass(CheckpointError, EscError) and issubclass(UnsafeCheckpointError, CheckpointError)
