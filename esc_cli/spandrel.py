"""ESC for spandrel, the model loader of chaiNNer and ComfyUI (docs/ecosystem.md).

    import spandrel, esc_cli.spandrel
    esc_cli.spandrel.install()                    # once, like spandrel_extra_arches.install()
    model = spandrel.ModelLoader().load_from_file("ESC_light_X4.pth")   # an ImageModelDescriptor
    upscaled = model(image)                       # [B, 3, H, W] float RGB in [0, 1] -> [B, 3, sH, sW]

Every variant this package loads is detected from tensor shapes (ESC, ESC-light, ESC-XL, ESC-FP, ESC-Real with
either upsampler), from official `.pth` files (`params_ema`) or from this package's safetensors. Needs the
`spandrel` extra: `pip install 'esc-cli[spandrel]'`.
"""

from __future__ import annotations

from esc_cli.errors import CheckpointError, MissingExtraError

try:
    from spandrel import MAIN_REGISTRY, ArchRegistry, ArchSupport, ImageModelDescriptor, ModelTiling, StateDict
    from spandrel import Architecture
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("esc_cli.spandrel needs spandrel: pip install 'esc-cli[spandrel]'") from None

from esc_cli.model import ESCNetwork, build_network, config_from_state_dict

ARCH_ID = "ESC"

# Measured on the golden checkpoints against fp32 (docs/ecosystem.md): fp16 61.8-87.9 dB, bf16 48.4-68.0 dB
# PSNR on the clamped output, every variant (ESC-Real's DySample samples in fp32 whatever the dtype).
SUPPORTS_HALF = True
SUPPORTS_BFLOAT16 = True


def _is_esc(state_dict: StateDict) -> bool:
    """True when the tensors describe an ESC-family network (shapes only; nothing is built)."""
    try:
        config_from_state_dict(state_dict)
    except (CheckpointError, KeyError, IndexError, ValueError, TypeError, AttributeError):
        return False
    return True


class ESCArch(Architecture[ESCNetwork]):
    """The ESC family as a spandrel architecture: any input size, no padding needed, tiling supported."""

    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="ESC", detect=_is_esc)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[ESCNetwork]:
        config = config_from_state_dict(state_dict)
        network = build_network(config)
        tags = [config.variant, f"{config.dim}nf", f"{config.n_blocks}x{config.conv_blocks}blocks", f"w{config.window_size}"]
        if config.variant == "esc-real":
            tags.append(str(config.upsampler))
        return ImageModelDescriptor(
            network,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=tags,
            supports_half=SUPPORTS_HALF,
            supports_bfloat16=SUPPORTS_BFLOAT16,
            scale=config.scale,
            input_channels=3,
            output_channels=3,
            size_requirements=None,  # reflect padding to whole windows happens inside the network
            tiling=ModelTiling.SUPPORTED,
        )


def install(*, registry: ArchRegistry = MAIN_REGISTRY, ignore_duplicates: bool = False) -> list[ArchSupport]:
    """Register ESC with `registry` (spandrel's main registry by default); returns what was added.

    Calling it twice raises spandrel's duplicate error unless `ignore_duplicates` is set, as for
    `spandrel_extra_arches.install()`.
    """
    support = ArchSupport.from_architecture(ESCArch())
    return registry.add(support, ignore_duplicates=ignore_duplicates)
