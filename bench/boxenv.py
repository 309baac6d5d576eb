"""The Python the benchmarks run the box with: a virtual environment holding only what a box
installs (``pip install .``, as image-build does), without the test tools of the development
environment. Some of those change the box's memory: lxml imports rnc2rng when it is installed,
about 10 MB.

The install is editable, so the box runs this working tree.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = Path("/tmp/library-box-venv")


def box_python(venv: Path = DEFAULT) -> str:
    """The interpreter of ``venv``, made (and the box installed into it) when missing, the box
    installed again when pyproject.toml changed since (a dependency added or replaced)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wanted = (ROOT / "pyproject.toml").read_bytes()
    stamp = venv / "box-pyproject.toml"
    if not stamp.exists() or stamp.read_bytes() != wanted:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)], check=True)
        stamp.write_bytes(wanted)
    return str(python)
