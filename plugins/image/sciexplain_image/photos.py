"""Real photos that ship inside scikit-image and scikit-learn, with object boxes.

Nothing here downloads: every photo listed is a file inside the installed
wheel (scikit-image only reaches the network for files it does not bundle,
and none of those are listed). The boxes were measured by hand by drawing
them on the photos; they bound the main object loosely (a few pixels of
margin), in original pixel coordinates ``(y0, y1, x0, x1)``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .preprocess import Box, Preprocess, as_rgb_uint8, map_box


def _error(kind: str, message: str) -> Exception:
    """The sciexplain error ``kind`` with ``message``; the core is imported only when an error is
    raised, so that importing this module stays light (no torch, no sciexplain core)."""
    from sciexplain import errors
    return getattr(errors, kind)(message)


__all__ = ["PHOTO_BOXES", "list_photos", "load_photo", "photo_box", "photo_info"]


class _Photo(NamedTuple):
    source: str
    loader: str  # function name in the source module, or sklearn file name
    shape: tuple[int, int]
    description: str


# name -> (package, how to load, (height, width), what it shows)
_PHOTOS: dict[str, _Photo] = {
    "astronaut": _Photo("scikit-image", "astronaut", (512, 512), "astronaut Eileen Collins in an orange suit (NASA, public domain)"),
    "camera": _Photo("scikit-image", "camera", (512, 512), "a man with a camera, greyscale (CC0, Lav Varshney)"),
    "chelsea": _Photo("scikit-image", "chelsea", (300, 451), "Chelsea the cat, close-up of the face (CC0, Stefan van der Walt)"),
    "coffee": _Photo("scikit-image", "coffee", (400, 600), "a cup of espresso on a saucer (CC0, Rachel Michetti)"),
    "coins": _Photo("scikit-image", "coins", (303, 384), "Greek coins, greyscale (no known copyright restrictions)"),
    "hubble_deep_field": _Photo("scikit-image", "hubble_deep_field", (872, 1000), "Hubble eXtreme Deep Field (NASA, public domain)"),
    "immunohistochemistry": _Photo("scikit-image", "immunohistochemistry", (512, 512), "immunohistochemistry stain of a tissue section (no known copyright restrictions)"),
    "motorcycle": _Photo("scikit-image", "stereo_motorcycle", (500, 741), "a red motorcycle in a garage (left view of a Middlebury 2014 stereo pair)"),
    "retina": _Photo("scikit-image", "retina", (1411, 1411), "human retina fundus photograph (CC0)"),
    "rocket": _Photo("scikit-image", "rocket", (427, 640), "DSCOVR on a Falcon 9 rocket on the launch pad (SpaceX, public domain)"),
    "china": _Photo("scikit-learn", "china.jpg", (427, 640), "a Chinese temple (CC-BY 2.0, danielbuechele on Flickr)"),
    "flower": _Photo("scikit-learn", "flower.jpg", (427, 640), "a flower (CC-BY 2.0, vultilion on Flickr)"),
}

#: Hand-measured boxes ``(y0, y1, x0, x1)`` around the main object of a photo,
#: in original pixel coordinates (``photo[y0:y1, x0:x1]``).
PHOTO_BOXES: dict[str, Box] = {
    "chelsea": Box(0, 300, 0, 400),  # the cat (fills the frame; background right of x=400)
    "coffee": Box(15, 305, 172, 412),  # the cup with its handle, not the saucer or spoon
    "rocket": Box(125, 408, 305, 337),  # the rocket from nose cone to pad, not the towers
    "astronaut": Box(15, 512, 18, 365),  # the person, hair to bottom edge, not the helmet
    "motorcycle": Box(70, 450, 93, 686),  # mirrors to wheels, tail light to front tyre
}


def list_photos() -> list[str]:
    """Names accepted by :func:`load_photo`, sorted."""
    return sorted(_PHOTOS)


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown photo {name!r}; available photos: {', '.join(list_photos())}.")


def photo_info(name: str) -> dict[str, object]:
    """Source package, original ``(height, width)`` and a description of a photo."""
    if name not in _PHOTOS:
        raise _unknown(name)
    photo = _PHOTOS[name]
    return {"source": photo.source, "shape": photo.shape, "description": photo.description}


def load_photo(name: str) -> np.ndarray:
    """Load a bundled photo as a ``(H, W, 3)`` uint8 RGB array.

    Parameters
    ----------
    name : str
        One of :func:`list_photos`: scikit-image photos (``"astronaut"``,
        ``"chelsea"``, ``"coffee"``, ``"rocket"``, ``"motorcycle"``, ...) and
        scikit-learn's sample images ``"china"`` and ``"flower"``.
        Greyscale photos are replicated to three channels.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ValueError
        If the name is unknown (the message lists the available names).
    ImportError
        If the package that ships the photo is not installed.
    """
    if not isinstance(name, str) or name not in _PHOTOS:
        raise _unknown(name)
    photo = _PHOTOS[name]
    if photo.source == "scikit-learn":
        image = _read_sklearn_sample(name, photo.loader)
    else:
        try:
            import skimage.data
        except ImportError as err:
            raise _error("MissingDependencyError", f"photo {name!r} ships with scikit-image: pip install scikit-image") from err
        loader: Callable[[], object] = getattr(skimage.data, photo.loader)
        image = loader()
        if name == "motorcycle":
            image = image[0]  # (left, right, disparity) -> left view
    rgb = as_rgb_uint8(np.asarray(image))
    if rgb.shape[:2] != photo.shape:
        raise _error("ComputationError",
            f"photo {name!r} has shape {rgb.shape[:2]}, expected {photo.shape}; the "
            f"installed {photo.source} ships a different file, so its box would be wrong."
        )
    return rgb


def _read_sklearn_sample(name: str, filename: str) -> np.ndarray:
    # The same JPEG that sklearn.datasets.load_sample_image reads, opened
    # directly: importing sklearn.datasets costs seconds.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise _error("MissingDependencyError", f"photo {name!r} ships with scikit-learn: pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "images" / filename
    if not path.is_file():
        raise _error("DataNotFoundError",
            f"photo {name!r}: {path} is missing from the installed scikit-learn; reinstall scikit-learn."
        )
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def photo_box(name: str, spec: Preprocess | None = None) -> Box:
    """The hand-measured box around a photo's main object.

    Parameters
    ----------
    name : str
        A photo with a box: one of ``sorted(PHOTO_BOXES)``.
    spec : Preprocess, optional
        If given, the box is mapped through this preprocessing (resize and
        centre crop) into model-input pixel coordinates.

    Returns
    -------
    Box
        ``(y0, y1, x0, x1)``, in original pixels, or model-input pixels when
        ``spec`` is given.
    """
    if name not in PHOTO_BOXES:
        raise _error("InputError",
            f"no object box for photo {name!r}; photos with boxes: {', '.join(sorted(PHOTO_BOXES))}."
        )
    box = PHOTO_BOXES[name]
    if spec is None:
        return box
    return map_box(box, spec, _PHOTOS[name].shape)
