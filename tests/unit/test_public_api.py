"""The public API of `esc_cli`: every exported name resolves, the import stays cheap, and the
README's "Python API" example runs as written (offline, bundled model, tiny generated image)."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

import esc_cli

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The first ```python block of README.md's "## Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "README.md: no python block in the Python API section"
    return match.group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    scope: dict = {"__name__": "readme_example"}
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md:Python API", "exec"), scope)
    assert out.getvalue().splitlines() == ["1 0 small_x2.png", "(64, 48)"]
    with Image.open(tmp_path / "small_x2.png") as image:
        assert image.size == (64, 48) and image.mode == "RGB"
    kinds = [type(e).__name__ for e in scope["events"]]
    assert kinds[0] == "BatchStarted" and kinds[-1] == "BatchFinished"
    assert kinds.count("ItemStarted") == 1 and kinds.count("ItemFinished") == 1
    assert isinstance(scope["summary"], esc_cli.BatchSummary)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png", "small_x2.png"]


def test_every_exported_name_resolves():
    from esc_cli.api.images import upscale_images
    from esc_cli.engine.upscaler import Upscaler
    from esc_cli.errors import EscError

    for name in esc_cli.__all__:
        assert getattr(esc_cli, name) is not None, name
    assert esc_cli.upscale_images is upscale_images and esc_cli.Upscaler is Upscaler
    assert issubclass(esc_cli.UsageError, esc_cli.EscError) and esc_cli.EscError is EscError
    assert set(esc_cli.__all__) <= set(dir(esc_cli))
    assert (Path(esc_cli.__file__).parent / "py.typed").is_file()


def test_import_esc_cli_does_not_load_torch():
    code = "import sys, esc_cli; print(sorted(m for m in ('torch', 'PIL', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error():
    try:
        esc_cli.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("esc_cli.no_such_name resolved")
