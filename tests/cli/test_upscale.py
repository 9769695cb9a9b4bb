"""`esc upscale` end to end: faithful files, safe batches and the scripting contract.

Tiny images generated here and a tiny random ESC x2 saved to a temp file (`--model`), so
nothing depends on downloadable weights. Most runs are in-process (`main(argv)`); pipes,
JSON, exit codes and signals also run as real subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import restore_sigint
import torch
from PIL import Image, ImageCms

from esc_cli.cli.app import main

RNG = np.random.default_rng(3)
ESC = [sys.executable, "-c", "import sys; from esc_cli.cli.app import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    from esc_cli.model import ESCConfig, build_network

    torch.manual_seed(1234)
    net = build_network(ESCConfig(variant="esc", scale=2, dim=16, pdim=8, kernel_size=7, n_blocks=1, conv_blocks=2,
                                  window_size=8, num_heads=2, exp_ratio=1.25, use_ln=False, upsampler="pixelshuffle"))
    path = tmp_path_factory.mktemp("model") / "tiny_x2.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def rand8(h: int, w: int, c: int) -> np.ndarray:
    return (RNG.random((h, w, c)) * 255).astype(np.uint8)


def esc(*args: str, model: Path) -> int:
    return main(["upscale", *args, "--model", str(model)])


def run_esc(*args: str, model: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*ESC, "upscale", *args, "--model", str(model), "--device", "cpu"],
                          capture_output=True, timeout=timeout, env=env, **kw)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".esc-tmp" in p.name]


# --------------------------------------------------------------------------- faithful files


def test_rgba_keeps_alpha_and_exit_0(tmp_path, model_file, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(rand8(10, 12, 4), "RGBA").save(src)
    assert esc(str(src), "-s", "2", model=model_file) == 0
    out = Image.open(tmp_path / "a_x2.png")
    assert out.mode == "RGBA" and out.size == (24, 20)
    assert "a_x2.png" in capsys.readouterr().err


def test_la_and_palette_transparency_keep_alpha(tmp_path, model_file):
    Image.fromarray(rand8(9, 11, 2), "LA").save(tmp_path / "la.png")
    pal = Image.new("P", (11, 9), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    pal.paste(0, (0, 0, 5, 9))  # left part transparent
    pal.paste(2, (8, 0, 11, 9))
    pal.save(tmp_path / "p.png", transparency=0)
    assert esc(str(tmp_path / "la.png"), str(tmp_path / "p.png"), "-s", "2", model=model_file) == 0
    la = Image.open(tmp_path / "la_x2.png")
    assert la.mode == "LA" and la.size == (22, 18)
    p = Image.open(tmp_path / "p_x2.png")
    assert p.mode == "RGBA"
    src_alpha = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))[..., 3]
    assert (src_alpha == 0).any()  # the source really is transparent somewhere
    assert esc(str(tmp_path / "p.png"), "-s", "2", "--alpha", "resize", "-o", str(tmp_path / "r.png"), model=model_file) == 0
    alpha = np.asarray(Image.open(tmp_path / "r.png"))[..., 3]
    assert alpha.min() == 0 and alpha.max() == 255


def _png_header(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data[24], data[25]  # bit depth, colour type


def test_16bit_png_and_tiff_stay_16bit(tmp_path, model_file):
    from esc_cli.io.encode import write_image
    from esc_cli.io.images import ImageData

    arr = (RNG.random((8, 10, 3)) * 65535).astype(np.uint16)
    image = ImageData(torch.from_numpy(arr.astype(np.float32) / 65535).permute(2, 0, 1), 16)
    write_image(image, tmp_path / "deep.png", "png")
    write_image(image, tmp_path / "deep.tif", "tiff")
    gray = (RNG.random((8, 10)) * 65535).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "gray16.png")
    assert _png_header(tmp_path / "deep.png") == (16, 2)
    assert esc(str(tmp_path / "deep.png"), str(tmp_path / "deep.tif"), str(tmp_path / "gray16.png"), "-s", "2",
               model=model_file) == 0
    assert _png_header(tmp_path / "deep_x2.png") == (16, 2)
    assert _png_header(tmp_path / "gray16_x2.png") == (16, 0)
    from esc_cli.io.decode import read_image

    for name in ("deep_x2.png", "deep_x2.tif", "gray16_x2.png"):
        out = read_image(tmp_path / name)
        assert out.bit_depth == 16 and out.width == 20 and out.height == 16
        values = np.round(out.pixels.numpy() * 65535).astype(np.int64)
        assert np.any(values % 257 != 0)  # real 16-bit values, not 8-bit ones widened
    assert set(Image.open(tmp_path / "deep_x2.tif").tag_v2[258]) == {16}


def test_grayscale_stays_grayscale(tmp_path, model_file):
    Image.fromarray(rand8(8, 8, 1)[..., 0], "L").save(tmp_path / "g.jpg", quality=95)
    assert esc(str(tmp_path / "g.jpg"), "-s", "2", model=model_file) == 0
    out = Image.open(tmp_path / "g_x2.jpg")
    assert out.mode == "L" and out.size == (16, 16) and out.format == "JPEG"


def test_exif_rotated_jpeg_is_upright_and_keeps_exif_and_icc(tmp_path, model_file):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    exif[0x010F] = "EscCam"
    Image.fromarray(rand8(8, 14, 3)).save(tmp_path / "r.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    assert esc(str(tmp_path / "r.jpg"), "-s", "2", model=model_file) == 0
    out = Image.open(tmp_path / "r_x2.jpg")
    assert out.size == (16, 28)  # upright: width and height swapped
    kept = out.getexif()
    assert kept.get(0x010F) == "EscCam" and kept.get(0x0112, 1) == 1
    assert out.info.get("icc_profile") == icc


def test_icc_profile_and_exif_carried_to_every_format(tmp_path, model_file):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "EscCam"
    Image.fromarray(rand8(8, 8, 3)).save(tmp_path / "c.png", icc_profile=icc, exif=exif.tobytes())
    for fmt, ext in (("png", "png"), ("webp", "webp"), ("tiff", "tif"), ("jpg", "jpg")):
        assert esc(str(tmp_path / "c.png"), "-s", "2", "--format", fmt, model=model_file) == 0
        out = Image.open(tmp_path / f"c_x2.{ext}")
        assert out.info.get("icc_profile") == icc, fmt
        assert out.getexif().get(0x010F) == "EscCam", fmt
        # and back again: the output's EXIF survives another round (webp -> jpg included)
        assert esc(str(tmp_path / f"c_x2.{ext}"), "-s", "1", "-f", "jpg", "-o", str(tmp_path / f"again_{ext}.jpg"),
                   model=model_file) == 0
        assert Image.open(tmp_path / f"again_{ext}.jpg").getexif().get(0x010F) == "EscCam", fmt


def test_cmyk_converted_with_a_note(tmp_path, model_file, capsys):
    Image.new("CMYK", (8, 8), (0, 200, 200, 0)).save(tmp_path / "k.jpg")
    assert esc(str(tmp_path / "k.jpg"), "-s", "2", "--json", model=model_file) == 0
    items = [e for e in json_lines(capsys.readouterr().out) if e["event"] == "item"]
    assert any("CMYK" in n for n in items[0]["notes"])
    assert Image.open(tmp_path / "k_x2.jpg").mode == "RGB"


def test_any_scale_uses_repeated_passes_and_resampling(tmp_path, model_file, capsys):
    Image.fromarray(rand8(10, 6, 3)).save(tmp_path / "s.png")
    assert esc(str(tmp_path / "s.png"), "-s", "3", model=model_file) == 0
    assert Image.open(tmp_path / "s_x3.png").size == (18, 30)
    assert esc(str(tmp_path / "s.png"), "-s", "1.5", "--json", model=model_file) == 0
    start = json_lines(capsys.readouterr().out)[0]
    assert start["passes"] == 1 and start["model_scale"] == 2
    assert Image.open(tmp_path / "s_x1.5.png").size == (9, 15)


# --------------------------------------------------------------------------- safe batches


def test_corrupt_file_in_folder_batch_goes_on_exit_1_json(tmp_path, model_file):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rand8(8, 8, 3)).save(folder / "good1.png")
    Image.fromarray(rand8(8, 8, 3)).save(folder / "good2.jpg")
    good = io.BytesIO()
    Image.fromarray(rand8(32, 32, 3)).save(good, format="PNG")
    (folder / "broken.png").write_bytes(good.getvalue()[:60])
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "readme.txt").write_text("not an image")
    proc = run_esc(str(folder), "-s", "2", "-o", str(tmp_path / "out"), "--json", model=model_file)
    assert proc.returncode == 1, proc.stderr.decode()
    events = json_lines(proc.stdout.decode())  # every stdout line is JSON
    assert events[0]["event"] == "start" and events[-1]["event"] == "summary"
    items = {Path(e["input"]).name: e for e in events if e["event"] == "item"}
    assert items["good1.png"]["status"] == "done" and items["good2.jpg"]["status"] == "done"
    assert items["broken.png"]["status"] == "failed" and "broken.png" in items["broken.png"]["error"]
    assert items[".DS_Store"]["status"] == "skipped" and items["readme.txt"]["status"] == "skipped"
    done = items["good1.png"]
    for key in ("input", "output", "seconds", "tile", "device", "dtype", "error"):
        assert key in done
    assert done["device"] == "cpu" and done["dtype"] == "float32" and done["seconds"] >= 0
    summary = events[-1]
    assert (summary["done"], summary["failed"], summary["ignored"], summary["exit_code"]) == (2, 1, 2, 1)
    assert (tmp_path / "out" / "good1_x2.png").exists() and not (tmp_path / "out" / "broken_x2.png").exists()
    assert "broken.png" in proc.stderr.decode()
    assert no_temp_files(tmp_path)


def test_input_as_its_own_output_is_refused(tmp_path, model_file, capsys):
    src = tmp_path / "keep.png"
    Image.fromarray(rand8(8, 8, 3)).save(src)
    before = src.read_bytes()
    assert esc(str(src), "-o", str(src), model=model_file) == 3
    assert esc(str(src), "-o", str(src), "--overwrite", model=model_file) == 3
    os.link(src, tmp_path / "hard.png")
    assert esc(str(src), "-o", str(tmp_path / "hard.png"), "--overwrite", model=model_file) == 3
    (tmp_path / "sym.png").symlink_to(src)
    assert esc(str(src), "-o", str(tmp_path / "sym.png"), "--overwrite", model=model_file) == 3
    assert src.read_bytes() == before
    assert "is the input" in capsys.readouterr().err
    assert no_temp_files(tmp_path)


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bomb_header_refused_with_max_pixels(tmp_path, model_file, capsys):
    (tmp_path / "bomb.png").write_bytes(_bomb_png(5000, 4000))
    assert esc(str(tmp_path / "bomb.png"), "--max-pixels", "1000000", model=model_file) == 3
    assert "max-pixels" in capsys.readouterr().err
    assert not (tmp_path / "bomb_x4.png").exists()


def test_memory_and_disk_precheck(tmp_path, model_file, capsys, monkeypatch):
    from esc_cli.api import resources as api

    Image.fromarray(rand8(8, 8, 3)).save(tmp_path / "m.png")
    monkeypatch.setattr(api.ResourceCheck, "available_memory", staticmethod(lambda: 1000))
    assert esc(str(tmp_path / "m.png"), "-s", "2", model=model_file) == 3
    assert "memory" in capsys.readouterr().err
    monkeypatch.setattr(api.ResourceCheck, "available_memory", staticmethod(lambda: None))
    monkeypatch.setattr(api.ResourceCheck, "free_disk", staticmethod(lambda folder: 10))
    assert esc(str(tmp_path / "m.png"), "-s", "2", model=model_file) == 3
    assert "disk" in capsys.readouterr().err
    assert not (tmp_path / "m_x2.png").exists()


def test_existing_output_overwrite_and_skip_existing_rerun(tmp_path, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rand8(8, 8, 3)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    assert esc(str(folder), "-s", "2", "-o", str(out), model=model_file) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert len(stamps) == 3
    capsys.readouterr()
    assert esc(str(folder), "-s", "2", "-o", str(out), model=model_file) == 3  # exists: error per item
    assert "already exists" in capsys.readouterr().err
    (out / "1_x2.png").unlink()  # as if the first run had been interrupted here
    assert esc(str(folder), "-s", "2", "-o", str(out), "--skip-existing", "--json", model=model_file) == 0
    events = json_lines(capsys.readouterr().out)
    statuses = sorted(e["status"] for e in events if e["event"] == "item")
    assert statuses == ["done", "skipped", "skipped"]
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "1_x2.png"} == {
        k: v for k, v in stamps.items() if k != "1_x2.png"
    }
    assert esc(str(folder), "-s", "2", "-o", str(out), "--overwrite", model=model_file) == 0
    assert esc(str(folder), "--overwrite", "--skip-existing", model=model_file) == 2


def test_rerun_next_to_inputs_does_not_upscale_outputs(tmp_path, model_file, capsys):
    Image.fromarray(rand8(8, 8, 3)).save(tmp_path / "x.png")
    assert esc(str(tmp_path), "-s", "2", model=model_file) == 0
    assert esc(str(tmp_path), "-s", "2", "--skip-existing", "--json", model=model_file) == 0
    items = [e for e in json_lines(capsys.readouterr().out) if e["event"] == "item"]
    assert all(e["status"] == "skipped" for e in items) and len(items) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "x_x2.png"]


def test_recursive_mirrors_tree_globs_and_name_template(tmp_path, model_file):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    Image.fromarray(rand8(6, 6, 3)).save(src / "top.png")
    Image.fromarray(rand8(6, 6, 3)).save(src / "a" / "b" / "deep.png")
    assert esc(str(src), "-r", "-s", "2", "-o", str(tmp_path / "out"), "--name", "{stem}.{ext}", "-f", "webp",
               model=model_file) == 0
    assert (tmp_path / "out" / "top.webp").exists() and (tmp_path / "out" / "a" / "b" / "deep.webp").exists()
    assert esc(str(src / "*.png"), "-s", "2", "--name", "{stem}-big.{ext}", model=model_file) == 0
    assert (src / "top-big.png").exists() and not (src / "a" / "b" / "deep-big.png").exists()


def test_interrupt_mid_write_leaves_no_temp_file(tmp_path, model_file, monkeypatch):
    from esc_cli.api import jobs as api

    Image.fromarray(rand8(8, 8, 3)).save(tmp_path / "i.png")

    def write_then_interrupt(image, target, fmt, **kw):
        Path(target).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "write_image", write_then_interrupt)
    assert esc(str(tmp_path / "i.png"), "-s", "2", model=model_file) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.png"]


def _interrupt_batch(tmp_path: Path, model_file: Path, sig: int) -> tuple[int, list[dict], Path]:
    folder = tmp_path / "many"
    folder.mkdir()
    base = io.BytesIO()
    Image.fromarray(rand8(96, 96, 3)).save(base, format="PNG")
    for i in range(60):
        (folder / f"{i:03d}.png").write_bytes(base.getvalue())
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*ESC, "upscale", str(folder), "-s", "4", "-o", str(out), "--json", "-q",
                             "--model", str(model_file), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=restore_sigint)
    lines = []
    try:
        assert proc.stdout is not None
        while True:  # wait for the first finished item, then interrupt
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode() if proc.stderr else "no output"
            lines.append(line)
            if json.loads(line)["event"] == "item":
                break
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = [json.loads(x) for x in lines] + json_lines(rest.decode())
    return proc.returncode, events, out


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_batch_exits_cleanly(tmp_path, model_file, sig, code):
    rc, events, out = _interrupt_batch(tmp_path, model_file, sig)
    assert rc == code
    summary = events[-1]
    assert summary["event"] == "summary" and summary["interrupted"] is True and summary["exit_code"] == code
    assert 1 <= summary["done"] < 60
    assert no_temp_files(out)
    written = sorted(out.iterdir())
    assert len(written) == summary["done"]
    for path in written:  # every output that exists is complete
        assert Image.open(path).size == (384, 384)


# --------------------------------------------------------------------------- pipes and contract


def test_stdin_to_stdout(tmp_path, model_file):
    buf = io.BytesIO()
    Image.fromarray(rand8(8, 10, 4), "RGBA").save(buf, format="PNG")
    proc = run_esc("-", "-s", "2", "-q", model=model_file, input=buf.getvalue())
    assert proc.returncode == 0, proc.stderr.decode()
    out = Image.open(io.BytesIO(proc.stdout))
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (20, 16)
    src = tmp_path / "f.jpg"
    Image.fromarray(rand8(8, 10, 3)).save(src)
    proc = run_esc(str(src), "-o", "-", "-s", "2", model=model_file)
    assert proc.returncode == 0, proc.stderr.decode()
    out = Image.open(io.BytesIO(proc.stdout))
    assert out.format == "JPEG" and out.size == (20, 16)


def test_usage_errors_exit_2(tmp_path, model_file):
    src = tmp_path / "u.png"
    Image.fromarray(rand8(6, 6, 3)).save(src)
    assert esc(str(src), "--device", "gpu", model=model_file) == 2
    assert esc(str(src), "--dtype", "int8", model=model_file) == 2
    assert esc(str(src), "--format", "bmp", model=model_file) == 2
    assert esc(str(src), "--name", "{nope}", model=model_file) == 2
    assert esc(str(src), "-s", "0.5", model=model_file) == 2
    other = tmp_path / "v.png"
    Image.fromarray(rand8(6, 6, 3)).save(other)
    assert esc(str(src), str(other), "-o", str(tmp_path / "one.png"), model=model_file) == 2
    assert esc(str(tmp_path), "-o", str(tmp_path / "one.png"), model=model_file) == 2
    assert esc(str(src), "-o", "-", "--json", model=model_file) == 2
    assert not (tmp_path / "one.png").exists()


def test_nothing_to_do_exits_3_and_a_missing_model_file_exits_2(tmp_path, model_file, capsys):
    assert esc(str(tmp_path / "missing.png"), model=model_file) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert esc(str(empty), model=model_file) == 3
    Image.fromarray(rand8(6, 6, 3)).save(tmp_path / "ok.png")
    # a --model that names nothing is a usage error (2), not "nothing processed" (issue 18)
    assert main(["upscale", str(tmp_path / "ok.png"), "--model", str(tmp_path / "nope.safetensors"), "--json"]) == 2
    summary = json_lines(capsys.readouterr().out)[-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 2 and summary["error"]


def test_quiet_plain_progress_lines(tmp_path, model_file, capsys):
    Image.fromarray(rand8(6, 6, 3)).save(tmp_path / "q.png")
    assert esc(str(tmp_path / "q.png"), "-s", "2", "-q", model=model_file) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    assert esc(str(tmp_path / "q.png"), "-s", "2", "--overwrite", model=model_file) == 0
    captured = capsys.readouterr()
    assert "[1/1]" in captured.err and "done" in captured.err and captured.out == ""


def test_rich_progress_on_a_terminal(tmp_path, model_file, monkeypatch):
    from rich.console import Console

    from esc_cli.cli import render

    screen = io.StringIO()
    monkeypatch.setattr(render, "err_console", Console(file=screen, force_terminal=True, width=100))
    for i in range(2):
        Image.fromarray(rand8(6, 6, 3)).save(tmp_path / f"t{i}.png")
    assert esc(str(tmp_path), "-s", "2", "--tile", "8", model=model_file) == 0
    text = screen.getvalue()
    assert "images" in text and "2/2" in text  # the tiles row is refreshed on a timer: not asserted
    assert "2 done, 0 skipped, 0 failed" in text


def test_messages_show_brackets_in_names_literally(tmp_path, model_file, capsys):
    folder = tmp_path / "[draft]"
    folder.mkdir()
    (folder / "[bold]x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert esc(str(folder / "[bold]x.png"), model=model_file) == 3
    assert "[draft]/[bold]x.png" in capsys.readouterr().err
