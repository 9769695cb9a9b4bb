"""The networks on their own: batches, any input size, all official layouts, the naive oracle."""

from __future__ import annotations

import json

import pytest
import torch

import esc_cli
from esc_cli.model import ESCConfig, build_network, config_from_state_dict
from esc_cli.model.layers import dihedral_ensemble, pad_reflect, reflect_indices
from tests.conftest import FIXTURES
from tests.reference.naive_esc import naive_esc_forward

LAYOUTS = json.loads((FIXTURES / "official_state_dict_layouts.json").read_text())


def _random_state(model: torch.nn.Module, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items()}


@pytest.mark.parametrize("b", [1, 2, 4])
def test_batch_equals_images_one_by_one(tiny_config, b):
    for variant in ("esc", "esc-fp"):
        torch.manual_seed(0)
        model = build_network(ESCConfig(**{**tiny_config.to_dict(), "variant": variant, "use_ln": True})).eval()
        x = torch.rand(b, 3, 13, 17) * torch.linspace(0.2, 1, b).view(b, 1, 1, 1)
        with torch.inference_mode():
            together = model(x)
            alone = torch.cat([model(x[i : i + 1]) for i in range(b)])
        assert (together - alone).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [(1, 1), (7, 9), (5, 300), (300, 5), (2, 3)])
@pytest.mark.parametrize("variant", ["esc", "esc-fp", "esc-real", "esc-real-dysample"])
def test_any_input_size_gives_right_shape_and_finite_values(size, variant):
    base = dict(dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=1, window_size=8, num_heads=2)
    if variant.startswith("esc-real"):
        cfg = ESCConfig(variant="esc-real", scale=4, **base, exp_ratio=2.0, use_ln=True,
                        upsampler="dysample" if variant.endswith("dysample") else "nearest-conv")
    else:
        cfg = ESCConfig(variant=variant, scale=3, **base, exp_ratio=1.25, use_ln=variant == "esc-fp")
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    x = torch.rand(1, 3, *size)
    with torch.inference_mode():
        y = model(x)
    assert tuple(y.shape) == (1, 3, size[0] * cfg.scale, size[1] * cfg.scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(7, 9), (5, 300), (300, 5), (33, 41)])
def test_matches_naive_oracle_where_reflect_padding_is_defined(tiny_config, size):
    """Where the official reflect padding works, the optimised path gives the same values."""
    for use_ln in (False, True):
        torch.manual_seed(0)
        model = build_network(ESCConfig(**{**tiny_config.to_dict(), "use_ln": use_ln})).eval()
        state = _random_state(model)
        model.load_state_dict(state)
        x = torch.rand(2, 3, *size)
        with torch.inference_mode():
            ours = model(x)
            ref = naive_esc_forward(x, state, scale=tiny_config.scale, window=8, heads=2)
        assert (ours - ref).abs().max().item() <= 1e-4


def test_official_code_fails_on_tiny_inputs_but_we_do_not(tiny_config):
    torch.manual_seed(0)
    model = build_network(tiny_config).eval()
    state = model.state_dict()
    x = torch.rand(1, 3, 3, 2)
    with pytest.raises(RuntimeError):
        naive_esc_forward(x, state, scale=2, window=8, heads=2)  # reflect pad 5 >= side 3
    with torch.inference_mode():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_official_layout_is_detected_and_runs(name):
    layout = LAYOUTS[name]
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in layout["state_dict"].items()}
    model = esc_cli.load_model(state)
    cfg, expected = model.config, layout["config"]
    assert model.variant == {"ESC": "esc", "ESCFP": "esc-fp", "ESCReal": "esc-real"}[layout["class"]]
    assert model.scale == expected["upscaling_factor"]
    for key in ("dim", "pdim", "kernel_size", "n_blocks", "conv_blocks", "window_size", "num_heads", "exp_ratio"):
        assert getattr(cfg, key) == expected[key], key
    assert cfg.use_ln == (name.startswith(("ESC_XL", "ESC_FP", "ESC_Real")))
    assert cfg.upsampler == {"ESC_Real_X4": "nearest-conv", "ESC_Real_X4_dysample": "dysample"}.get(name, "pixelshuffle")
    assert sum(p.numel() for p in model.state_dict().values()) == layout["params"] + (
        128 if name == "ESC_Real_X4_dysample" else 0  # the init_pos buffer is not a parameter
    )
    assert not model.training
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 12, 10))
    assert tuple(y.shape) == (1, 3, 12 * model.scale, 10 * model.scale)


def test_config_round_trips_through_state_dict(tiny_config):
    model = build_network(tiny_config)
    assert config_from_state_dict(model.state_dict()) == tiny_config


def test_reflect_padding_matches_torch_where_defined_and_extends_beyond():
    x = torch.arange(5.0).view(1, 1, 1, 5)
    assert torch.equal(pad_reflect(x, 0, 0, 0, 3), torch.nn.functional.pad(x, (0, 3, 0, 0), mode="reflect"))
    assert reflect_indices(3, 9, torch.device("cpu")).tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    assert reflect_indices(1, 4, torch.device("cpu")).tolist() == [0, 0, 0, 0]


def test_ensemble_is_invariant_under_the_dihedral_group():
    k = torch.randn(2, 2, 5, 5)
    e = dihedral_ensemble(k)
    assert torch.allclose(e, e.flip(3), atol=1e-6)
    assert torch.allclose(e, torch.rot90(e, 1, dims=(2, 3)), atol=1e-6)


def test_ensemble_and_bias_caches_follow_weight_updates(tiny_model):
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        before = tiny_model(x)
    with torch.no_grad():
        tiny_model.plk_filter.add_(0.5)
        tiny_model.blocks[0].attn.relative_position_bias.add_(1.0)
    with torch.inference_mode():
        after = tiny_model(x)
    fresh = build_network(tiny_model.config).eval()
    fresh.load_state_dict(tiny_model.state_dict())
    with torch.inference_mode():
        expected = fresh(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, atol=1e-6)


def test_training_gets_gradients_through_ensemble_and_bias(tiny_config):
    model = build_network(tiny_config).train()
    model(torch.rand(2, 3, 16, 16)).mean().backward()
    assert model.plk_filter.grad is not None and model.plk_filter.grad.abs().sum() > 0
    assert model.blocks[0].attn.relative_position_bias.grad.abs().sum() > 0


def test_config_takes_keywords_only(tiny_config):
    with pytest.raises(TypeError):
        ESCConfig("esc", 2)  # positional arguments would depend on field order
    assert ESCConfig(**tiny_config.to_dict()) == tiny_config
