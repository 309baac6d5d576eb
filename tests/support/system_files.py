"""Helpers of the tests of the box image's system files: settings and layout as the image has them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path, PurePosixPath

import pytest

from appliance.settings import Settings
from appliance.system import ImageLayout, render_all


def box_settings(tmp_path: Path, **changes) -> Settings:
    values = {"home": tmp_path / "data" / "library", "host": "0.0.0.0", "port": 80}
    values.update(changes)
    return Settings(**values)


def box_layout(tmp_path: Path, **changes) -> ImageLayout:
    return ImageLayout(data_mount=PurePosixPath((tmp_path / "data").as_posix()), **changes)


def rendered(settings: Settings, layout: ImageLayout) -> dict[str, str]:
    return {str(f.path): f.text for f in render_all(settings, layout)}


def need(tool: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.access(f"/usr/sbin/{tool}", os.X_OK) else None)
    if not path:
        pytest.skip(f"{tool} is not installed (bash .ci/run installs it)")
    return path
