"""Preparing an official checkpoint for publication: safetensors tensors, config.json, model card.

Pure functions (no file writes): `esc_cli.api.catalog.convert_checkpoint` writes the results.
"""

from __future__ import annotations

from typing import Mapping, Optional

from torch import Tensor

from esc_cli.model import ESCConfig
from esc_cli.weights.catalog import UPSTREAM_REPO, CatalogEntry

CONFIG_FORMAT = "esc-cli/1"


def safetensors_tensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous, unshared CPU copies of every tensor (safetensors stores nothing else)."""
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in state.items()}


def safetensors_metadata() -> dict[str, str]:
    """The header metadata of model.safetensors: only `format`, so conversions are reproducible.

    safetensors writes a multi-key metadata map in an unstable order (two saves of the same
    tensors differed), which would give every conversion another sha256; the description of
    the network goes to config.json instead.
    """
    return {"format": "pt"}


def config_document(
    config: ESCConfig,
    *,
    params: int,
    source_name: str,
    source_sha256: str,
    entry: Optional[CatalogEntry],
) -> dict:
    """The content of config.json: the hyper-parameters and where the weights came from."""
    return {
        "format": CONFIG_FORMAT,
        "name": entry.name if entry else None,
        "architecture": {"esc": "ESC", "esc-fp": "ESCFP", "esc-real": "ESCReal"}.get(config.variant, config.variant),
        "config": config.to_dict(),
        "parameters": params,
        "source": {
            "file": source_name,
            "sha256": source_sha256,
            "url": entry.upstream if entry else None,
            "state_dict_key": "params_ema (else params)",
        },
        "license": entry.license if entry else "unverified",
    }


def model_card(
    config: ESCConfig,
    *,
    params: int,
    source_name: str,
    source_sha256: str,
    model_sha256: str,
    entry: Optional[CatalogEntry],
) -> str:
    """A Hub model card (README.md with YAML front matter) for a converted checkpoint."""
    name = entry.name if entry else f"{config.variant}-x{config.scale}"
    description = entry.description if entry else "ESC-family super-resolution network"
    upstream = entry.upstream if entry else UPSTREAM_REPO
    lines = [
        "---",
        "license: other  # the upstream terms; see the License section",
        "library_name: esc-cli",
        "pipeline_tag: image-to-image",
        "tags:",
        "  - super-resolution",
        "  - esc",
        "  - safetensors",
        "---",
        "",
        f"# {name}",
        "",
        f"{description}. Weights of the official ESC release (Lee, Yun and Ro, \"Emulating",
        "Self-attention with Convolution for Efficient Image Super-Resolution\", ICCV 2025),",
        "converted to safetensors for the `esc` command-line upscaler. The tensors are the",
        "official `params_ema` state dict, unchanged (keys and values), stored contiguously.",
        "",
        "| | |",
        "|---|---|",
        f"| variant | {config.variant} |",
        f"| scale | x{config.scale} |",
        f"| parameters | {params:,} |",
        f"| dim / blocks / window | {config.dim} / {config.n_blocks} / {config.window_size} |",
        f"| source file | `{source_name}` ({upstream}) |",
        f"| source sha256 | `{source_sha256}` |",
        f"| model.safetensors sha256 | `{model_sha256}` |",
        "",
        "## Use",
        "",
        "```bash",
        f"esc upscale photo.png --model {name}" if entry else "esc upscale photo.png --model hf://OWNER/REPO",
        "```",
        "",
        "## License",
        "",
        f"The weights are the authors' ({UPSTREAM_REPO}); their terms apply. The license",
        "shown here is a placeholder until those terms are checked: read the upstream",
        "repository's LICENSE before redistributing.",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@InProceedings{Lee_2025_ICCV,",
        "  author    = {Lee, Dongheon and Yun, Seokju and Ro, Youngmin},",
        "  title     = {Emulating Self-attention with Convolution for Efficient Image Super-Resolution},",
        "  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},",
        "  year      = {2025},",
        "  pages     = {24467-24477}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)
