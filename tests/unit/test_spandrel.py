"""esc_cli.spandrel: ESC as a spandrel architecture (detect, load, descriptor fields, parity, no false claims)."""

from __future__ import annotations

import pytest
import torch

from esc_cli.api.loading import load_model
from tests.conftest import GOLDEN
from tests.spandrel_env import import_spandrel

pytestmark = pytest.mark.spandrel
CHECKPOINTS = ["esc_light_x4", "esc_fp_x3", "esc_real_x4", "esc_real_dysample_x4"]


@pytest.fixture(scope="module")
def spandrel():
    module = import_spandrel()
    import esc_cli.spandrel

    esc_cli.spandrel.install(ignore_duplicates=True)
    return module


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_official_checkpoints_load_as_esc_and_match_this_package(spandrel, name):
    path = GOLDEN / f"{name}.pth"
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    network = load_model(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert descriptor.architecture.id == "ESC" and descriptor.purpose == "SR"
    assert descriptor.scale == network.scale and descriptor.input_channels == descriptor.output_channels == 3
    assert descriptor.supports_half and descriptor.supports_bfloat16
    assert descriptor.tiling == spandrel.ModelTiling.SUPPORTED and descriptor.size_requirements.minimum <= 1
    image = torch.rand(1, 3, 29, 35, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = network(image)
        raw = descriptor.model(image)  # the network itself
        called = descriptor(image)  # spandrel's call API clamps to [0, 1]
    assert (raw - expected).abs().max().item() <= 1e-4
    assert (called - expected.clamp(0, 1)).abs().max().item() <= 1e-4


def test_this_packages_safetensors_load_too(spandrel):
    from esc_cli.weights.catalog import CATALOG, bundled_path

    entry = next(e for e in CATALOG if e.bundled and bundled_path(e).is_file())
    descriptor = spandrel.ModelLoader().load_from_file(str(bundled_path(entry)))
    assert descriptor.architecture.id == "ESC" and descriptor.scale == entry.scale


def test_half_precision_runs_without_nan(spandrel):
    descriptor = spandrel.ModelLoader().load_from_file(str(GOLDEN / "esc_real_dysample_x4.pth"))
    descriptor.model.half()
    with torch.no_grad():
        out = descriptor(torch.rand(1, 3, 12, 14).half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def _other_architectures(spandrel):
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.PLKSR import PLKSR
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "Compact": Compact(num_feat=16, num_conv=4, upscale=2),
        "ESRGAN": ESRGAN(num_filters=16, num_blocks=2, scale=4),
        "OmniSR": OmniSR(num_feat=16, up_scale=2),
        "PLKSR": PLKSR(dim=16, n_blocks=2, upscaling_factor=2),
        "SPAN": SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=2),
        "SwinIR": SwinIR(embed_dim=24, depths=[2], num_heads=[2], window_size=4, upscale=2, upsampler="pixelshuffle"),
    }


def test_other_architectures_are_not_claimed(spandrel):
    from esc_cli.spandrel import _is_esc

    loader = spandrel.ModelLoader()
    for arch_id, model in _other_architectures(spandrel).items():
        state = {k: v for k, v in model.state_dict().items()}
        assert not _is_esc(state), arch_id
        assert loader.load_from_state_dict(state).architecture.id != "ESC", arch_id


def test_install_twice_is_refused_unless_asked(spandrel):
    from esc_cli.spandrel import install

    registry = spandrel.ArchRegistry()
    install(registry=registry)
    with pytest.raises(Exception):
        install(registry=registry)
    assert install(registry=registry, ignore_duplicates=True) == []
