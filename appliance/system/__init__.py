"""Every system file of the box image, rendered from the box's settings.

``render_all(settings)`` returns the files (path on the box, text, permission bits);
``write_files(files, out)`` lays them out under ``out`` as they would sit on the box's root.
The pi-gen stage in image-build/ copies that tree into the image.
"""
from __future__ import annotations

import logging
from pathlib import Path

from appliance.settings import Settings
from appliance.storage.atomic import atomic_write_text
from appliance.system.dns import render_dns
from appliance.system.firstboot import render_first_boot
from appliance.system.fstab import render_fstab
from appliance.system.layout import ConfigError, ImageLayout, SystemFile
from appliance.system.units import render_units
from appliance.system.wifi import render_wifi

__all__ = ["ConfigError", "ImageLayout", "SystemFile", "render_all", "write_files"]

logger = logging.getLogger(__name__)


def render_all(settings: Settings, layout: ImageLayout | None = None) -> list[SystemFile]:
    """Render every system file; raises ConfigError naming the setting to fix."""
    layout = layout or ImageLayout()
    files: list[SystemFile] = []
    for render in (render_wifi, render_dns, render_units, render_first_boot, render_fstab):
        files.extend(render(settings, layout))
    return files


def write_files(files: list[SystemFile], out: Path) -> list[Path]:
    """Write each file under ``out`` at its path on the box (``/etc/fstab`` -> ``out/etc/fstab``)."""
    written = []
    for f in files:
        target = Path(out) / f.path.relative_to("/")
        atomic_write_text(target, f.text, mode=f.mode)
        logger.debug("wrote %s", target)
        written.append(target)
    return written
