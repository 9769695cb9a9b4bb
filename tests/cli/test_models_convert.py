"""`esc models convert/info/list/path/verify` in-process through `main()` (no network involved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from esc_cli.cli.app import main
from esc_cli.weights import catalog
from tests.hubserver import model_bytes, tiny_config

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_official_checkpoint(tmp_path, capsys):
    out_dir = tmp_path / "esc-fp-x3"
    code, out, err = _run(capsys, "models", "convert", str(GOLDEN / "esc_fp_x3.pth"), str(out_dir))
    assert code == 0, err
    files = [Path(line) for line in out.split()]
    assert [f.name for f in files] == ["model.safetensors", "config.json", "README.md"]
    official = torch.load(GOLDEN / "esc_fp_x3.pth", weights_only=True)["params_ema"]
    converted = load_file(str(out_dir / "model.safetensors"))
    assert converted.keys() == official.keys()
    assert all(torch.equal(converted[k], official[k]) for k in official)
    config = json.loads((out_dir / "config.json").read_text())
    assert config["config"]["variant"] == "esc-fp" and config["config"]["scale"] == 3
    assert config["parameters"] == 530_170
    card = (out_dir / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: image-to-image" in card
    assert config["model_sha256"] in card and config["model_sha256"] in err
    with safe_open(str(out_dir / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}  # one key: multi-key headers are written in unstable order
    assert sorted(p.name for p in out_dir.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    # info on the result: detected variant, config and parameters
    code, out, _ = _run(capsys, "models", "info", "--json", str(out_dir / "model.safetensors"))
    info = json.loads(out)
    assert code == 0 and info["variant"] == "esc-fp" and info["scale"] == 3 and info["params"] == 530_170
    assert info["catalog_name"] == "esc-fp-x3" and info["config"]["num_heads"] == 3

    # converting again keeps the files unless --overwrite
    before = (out_dir / "model.safetensors").read_bytes()
    code, _, err = _run(capsys, "models", "convert", str(GOLDEN / "esc_fp_x3.pth"), str(out_dir))
    assert code == 3 and "already exists" in err
    assert (out_dir / "model.safetensors").read_bytes() == before
    code, _, _ = _run(capsys, "models", "convert", "--overwrite", str(GOLDEN / "esc_fp_x3.pth"), str(out_dir))
    assert code == 0 and (out_dir / "model.safetensors").read_bytes() == before  # deterministic


def test_convert_takes_params_ema_and_makes_tensors_contiguous(tmp_path, capsys):
    torch.manual_seed(0)
    ema = load_file_bytes(model_bytes(tiny_config(2), seed=1))
    raw = load_file_bytes(model_bytes(tiny_config(2), seed=2))
    key = next(k for k, v in ema.items() if v.dim() == 4 and v.shape[0] == v.shape[1])
    ema[key] = ema[key].transpose(0, 1).contiguous().transpose(0, 1)  # same values, strided view
    assert not ema[key].is_contiguous()
    source = tmp_path / "basicsr.pth"
    torch.save({"params": raw, "params_ema": ema}, source)
    code, _, err = _run(capsys, "models", "convert", str(source), str(tmp_path / "out"))
    assert code == 0, err
    converted = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(converted[k], ema[k]) for k in ema)
    assert not torch.equal(converted[key], raw[key])


def load_file_bytes(data: bytes) -> dict:
    from safetensors.torch import load

    return load(data)


def test_convert_refuses_what_is_not_an_esc_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "bogus.pth"
    torch.save({"params_ema": {"weight": torch.zeros(3)}}, bogus)
    code, _, err = _run(capsys, "models", "convert", str(bogus), str(tmp_path / "out"))
    assert code == 3 and "bogus.pth" in err
    assert not (tmp_path / "out").exists()
    code, _, err = _run(capsys, "models", "convert", "--name", "esc-light-x2", str(GOLDEN / "esc_fp_x3.pth"),
                        str(tmp_path / "out2"))  # fmt: skip
    assert code == 3 and "not esc-light-x2" in err
    assert not (tmp_path / "out2").exists()


def test_info_detects_esc_real_with_dysample(capsys):
    code, out, _ = _run(capsys, "models", "info", str(GOLDEN / "esc_real_dysample_x4.pth"))
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert fields["variant"] == "esc-real (dysample)" and fields["parameters"] == "2,169,499"
    code, _, err = _run(capsys, "models", "info", "nowhere.pth")
    assert code == 2 and "no such file" in err  # a path that names nothing is a usage error (issue 18)


def test_list_path_and_verify_bundled(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(catalog.BUNDLED_DIR_ENV, str(tmp_path))
    (tmp_path / "esc-default-x2.safetensors").write_bytes(model_bytes(tiny_config(2)))
    code, out, _ = _run(capsys, "models", "list", "--json")
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert code == 0 and len(rows) == len(catalog.CATALOG)
    assert rows["default-x2"]["state"] == "bundled" and rows["default-x4"]["state"] == "missing"
    assert rows["default-x2"]["params"] == sum(
        p.numel() for p in __import__("esc_cli.model", fromlist=["build_network"]).build_network(tiny_config(2)).parameters()
    )
    assert rows["esc-xl-x4"]["params"] == 12_518_160 and rows["esc-xl-x4"]["source"].endswith("/esc-xl-x4/model.safetensors@main")
    code, out, _ = _run(capsys, "models", "list")
    assert code == 0 and "esc-dflip-x4*" in out and "default-x2" in out
    code, out, _ = _run(capsys, "models", "path", "default-x2")
    assert code == 0 and out.strip() == str(tmp_path / "esc-default-x2.safetensors")
    code, _, err = _run(capsys, "models", "path", "default-x4")
    assert code == 3 and "missing" in err
    code, out, _ = _run(capsys, "models", "verify", "--json", "default-x2")
    assert code == 0 and json.loads(out)["state"] == "unverified"
    (tmp_path / "esc-default-x2.safetensors").write_bytes(b"\0" * 64)
    code, out, err = _run(capsys, "models", "verify", "--json", "default-x2")
    assert code == 1 and json.loads(out)["state"] == "bad"


@pytest.mark.parametrize("args", [["models", "pull"], ["models", "path"], ["models", "pull", "hf://x"]])
def test_usage_errors_exit_2(capsys, args):
    code, _, _ = _run(capsys, *args)
    assert code == 2
