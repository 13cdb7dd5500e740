"""A simulated EEG recording with known sources (brain dipoles, eye blinks, muscle) for ICA and ICLabel.

No EEG recording ships in any package reachable here, so :func:`simulate_recording` builds one with
MNE: 32 electrodes of the 10-20 system on the ``colin27_1020`` montage, a three-shell sphere head
model fitted to them (``mne.make_sphere_model``), and these sources, whose scalp patterns and time
courses are returned as the ground truth:

* ``alpha``: a dipole in the occipito-parietal cortex (midline), 10 Hz alpha waxing and waning;
* ``mu``: a dipole under C3, an 11 Hz mu rhythm with bursts;
* ``background``: 12 dipoles at random positions in the brain with 1/f ("pink") activity;
* ``eye blink``: a pattern that decays with distance from a point in front of the eyes (largest at
  Fp1/Fp2, the corneo-retinal dipole seen through the forehead), with 300 ms blinks of about 100 uV
  every 2-6 s;
* ``muscle``: a pattern concentrated around T8 (temporalis muscle), broadband activity above 20 Hz
  in bursts of 0.5-2 s;
* sensor noise, 1 uV white per channel.

Brain patterns come from the forward model (fixed, roughly radial orientations); the artefact
patterns are spatial decay laws, since their generators lie outside the sphere model. Everything is
seeded. :func:`fit_ica` prepares the recording as ICLabel expects (1-100 Hz band pass, common average
reference) and fits extended infomax ICA; :func:`match_components` finds the component of each known
source by the correlation of scalp patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SimulatedSources", "simulate_recording", "fit_ica", "match_components", "ICSIM_CH_NAMES"]

#: the 32 electrodes of the simulated recording (all in MNE's ``colin27_1020`` montage)
ICSIM_CH_NAMES = ("Fp1 Fp2 AF3 AF4 F7 F3 Fz F4 F8 FC5 FC1 FC2 FC6 T7 C3 Cz C4 T8 CP5 CP1 CP2 CP6 P7 P3 Pz P4 "
                  "P8 PO3 PO4 O1 Oz O2").split()


@dataclass
class SimulatedSources:
    """The ground truth of :func:`simulate_recording`.

    Attributes
    ----------
    names : list of str
        ``"alpha"``, ``"mu"``, ``"eye blink"``, ``"muscle"`` (the background dipoles are not listed).
    patterns : numpy.ndarray, shape (n_channels, n_sources)
        Scalp pattern of each source in volts per unit of its time course, before re-referencing.
    time_courses : numpy.ndarray, shape (n_sources, n_times)
        Unit-free activity of each source (its pattern times it is its contribution to the data).
    kinds : dict of str to str
        The ICLabel class each source should be given (``"brain"``, ``"eye blink"``,
        ``"muscle artifact"``).
    settings : dict
    """

    names: list[str]
    patterns: np.ndarray
    time_courses: np.ndarray
    kinds: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def _pink(rng: np.random.Generator, n: int, sfreq: float, low: float = 1.0) -> np.ndarray:
    """Unit-variance noise with a 1/f power spectrum above ``low`` Hz."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    spectrum *= 1 / np.sqrt(np.maximum(freqs, low))
    out = np.fft.irfft(spectrum, n)
    return out / out.std()


def _rhythm(rng: np.random.Generator, times: np.ndarray, freq: float, sfreq: float, burst_s: float) -> np.ndarray:
    """An oscillation near ``freq`` Hz whose amplitude waxes and wanes over about ``burst_s`` seconds."""
    phase = 2 * np.pi * np.cumsum(freq + 0.3 * _smooth(rng, len(times), sfreq, 1.0)) / sfreq
    envelope = np.clip(1.0 + 0.8 * _smooth(rng, len(times), sfreq, burst_s), 0.05, None)
    out = envelope * np.sin(phase)
    return out / out.std()


def _smooth(rng: np.random.Generator, n: int, sfreq: float, scale_s: float) -> np.ndarray:
    """Unit-variance noise smoothed over ``scale_s`` seconds (Gaussian kernel)."""
    width = max(1, int(scale_s * sfreq))
    kernel = np.exp(-0.5 * (np.arange(-3 * width, 3 * width + 1) / width) ** 2)
    out = np.convolve(rng.standard_normal(n + len(kernel)), kernel, mode="same")[len(kernel) // 2:][:n]
    return (out - out.mean()) / out.std()


def _blinks(rng: np.random.Generator, n: int, sfreq: float) -> np.ndarray:
    out = np.zeros(n)
    t = rng.uniform(0.5, 2.0)
    width = int(0.3 * sfreq)
    pulse = np.hanning(width)
    while int(t * sfreq) + width < n:
        start = int(t * sfreq)
        out[start:start + width] += rng.uniform(0.8, 1.2) * pulse
        t += rng.uniform(2.0, 6.0)
    return out


def _muscle(rng: np.random.Generator, n: int, sfreq: float) -> np.ndarray:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [20.0, min(100.0, 0.45 * sfreq)], btype="bandpass", fs=sfreq, output="sos")
    burst = sosfiltfilt(sos, rng.standard_normal(n))
    gate = np.zeros(n)
    t = rng.uniform(0.0, 2.0)
    while int(t * sfreq) < n:
        length = rng.uniform(0.5, 2.0)
        a, b = int(t * sfreq), min(n, int((t + length) * sfreq))
        gate[a:b] = np.hanning(b - a) ** 0.5 * rng.uniform(0.6, 1.4)
        t += length + rng.uniform(1.0, 4.0)
    out = burst * (0.15 + gate)
    return out / out.std()


def simulate_recording(*, duration: float = 60.0, sfreq: float = 250.0, seed: int = 0,
                       n_background: int = 12, sensor_noise: float = 1e-6):
    """A continuous 32-channel recording with known brain and artefact sources.

    Parameters
    ----------
    duration : float
        Seconds (at least 10; ICLabel's autocorrelation feature wants more than 5 s).
    sfreq : float
        Sampling rate in Hz (at least 200, so that ICLabel's PSD feature reaches 100 Hz).
    seed : int
        Seeds the sources, their positions and the noise.
    n_background : int
        Number of background brain dipoles with 1/f activity.
    sensor_noise : float
        Standard deviation of the white sensor noise in volts.

    Returns
    -------
    raw : mne.io.RawArray
        Volts, montage ``colin27_1020`` set, unfiltered, not re-referenced.
    truth : SimulatedSources
    """
    import mne

    if duration < 10 or sfreq < 200:
        from sciexplain.errors import InputError
        raise InputError(f"simulate_recording needs duration >= 10 s and sfreq >= 200 Hz (ICLabel's features), "
                         f"got {duration} s at {sfreq} Hz")
    rng = np.random.default_rng(seed)
    info = mne.create_info(list(ICSIM_CH_NAMES), float(sfreq), "eeg")
    info.set_montage("colin27_1020")
    pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
    centre = np.asarray(sphere["r0"], dtype=np.float64)
    # brain dipoles, in head coordinates relative to the sphere's centre: alpha (occipito-parietal,
    # midline), mu (under C3), then background dipoles at random places inside the brain
    c3 = pos[ICSIM_CH_NAMES.index("C3")] - centre
    fixed = [np.array([0.0, -0.045, 0.02]), 0.6 * c3]
    background = []
    while len(background) < n_background:
        p = rng.uniform(-0.06, 0.06, 3)
        if np.linalg.norm(p) < 0.06 and p[2] > -0.01:
            background.append(p)
    rr = np.array(fixed + background)
    nn = rr / np.linalg.norm(rr, axis=1, keepdims=True)  # radial, as cortical pyramidal cells roughly are
    nn = nn + 0.2 * rng.standard_normal(nn.shape)
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    src = mne.setup_volume_source_space(pos={"rr": centre + rr, "nn": nn}, sphere=sphere, verbose=False)
    fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, eeg=True, meg=False, verbose=False)
    fwd = mne.convert_forward_solution(fwd, force_fixed=True, verbose=False)
    gain = np.asarray(fwd["sol"]["data"], dtype=np.float64)  # (channel, dipole), V per A m
    n = int(round(duration * sfreq))
    times = np.arange(n) / sfreq

    def brain_pattern(k: int, peak_uv: float) -> np.ndarray:
        g = gain[:, k]
        return g / np.abs(g).max() * peak_uv * 1e-6

    # artefact patterns: blink decays from a point 3 cm in front of the midpoint of Fp1 and Fp2;
    # muscle is concentrated around T8
    fp = 0.5 * (pos[ICSIM_CH_NAMES.index("Fp1")] + pos[ICSIM_CH_NAMES.index("Fp2")])
    eye = fp + 0.03 * (fp - centre) / np.linalg.norm(fp - centre)
    d_eye = np.linalg.norm(pos - eye, axis=1)
    blink_pattern = np.exp(-(d_eye - d_eye.min()) / 0.035) * 100e-6
    t8 = pos[ICSIM_CH_NAMES.index("T8")]
    d_t8 = np.linalg.norm(pos - t8, axis=1)
    muscle_pattern = np.exp(-0.5 * (d_t8 / 0.025) ** 2) * 20e-6

    names = ["alpha", "mu", "eye blink", "muscle"]
    patterns = np.stack([brain_pattern(0, 15.0), brain_pattern(1, 8.0), blink_pattern, muscle_pattern], axis=1)
    courses = np.stack([_rhythm(rng, times, 10.0, sfreq, 2.0), _rhythm(rng, times, 11.0, sfreq, 1.0),
                        _blinks(rng, n, sfreq), _muscle(rng, n, sfreq)])
    data = patterns @ courses
    for k in range(len(fixed), rr.shape[0]):
        data += np.outer(brain_pattern(k, rng.uniform(3.0, 6.0)), _pink(rng, n, sfreq))
    data += sensor_noise * rng.standard_normal(data.shape)
    raw = mne.io.RawArray(data, info, verbose=False)
    truth = SimulatedSources(names, patterns, courses,
                             kinds={"alpha": "brain", "mu": "brain", "eye blink": "eye blink",
                                    "muscle": "muscle artifact"},
                             settings={"duration": duration, "sfreq": sfreq, "seed": seed,
                                       "n_background": n_background, "sensor_noise": sensor_noise})
    return raw, truth


def fit_ica(raw: Any, *, n_components: int = 15, seed: int = 0, max_iter: int | str = 500,
            method: str = "infomax"):
    """Prepare a recording as ICLabel expects and fit ICA (extended infomax, as ICLabel expects, by default).

    The raw data are copied, band-pass filtered 1-100 Hz (the low pass only if the Nyquist
    frequency allows it) and re-referenced to the common average (applied, not a projector).

    Returns
    -------
    raw : mne.io.Raw
        The prepared copy (pass this one to :func:`sciexplain_eeg.iclabel_features`).
    ica : mne.preprocessing.ICA
        Fitted; with ``method="infomax"`` (default) ``fit_params={"extended": True}``, the
        decomposition ICLabel was trained on (about 7 minutes for 60 s and 15 components on a busy
        2-core machine); ``method="fastica"`` takes seconds and is what the tests use (ICLabel still
        labels the simulated sources correctly, mne-icalabel warns about the method).
    """
    import mne

    prepared = raw.copy().load_data()
    high = 100.0 if prepared.info["sfreq"] > 200.0 else None
    prepared.filter(1.0, high, verbose=False)
    prepared.set_eeg_reference("average", projection=False, verbose=False)
    fit_params = {"extended": True} if method == "infomax" else None
    ica = mne.preprocessing.ICA(n_components=n_components, method=method, fit_params=fit_params,
                                random_state=seed, max_iter=max_iter, verbose=False)
    ica.fit(prepared, verbose=False)
    return prepared, ica


def match_components(ica: Any, truth: SimulatedSources) -> dict[str, tuple[int, float]]:
    """For each known source, the ICA component whose scalp pattern correlates best with it.

    Patterns are compared after the common average reference (each pattern minus its mean over
    channels), by the absolute Pearson correlation (ICA leaves the sign open).

    Returns
    -------
    dict
        ``{source name: (component index, |r|)}``.
    """
    mixing = np.asarray(ica.get_components(), dtype=np.float64)  # (channel, component)
    true = truth.patterns[[ICSIM_CH_NAMES.index(c) for c in ica.ch_names]]  # rows in the ICA's channel order
    true = true - true.mean(axis=0, keepdims=True)
    out = {}
    for j, name in enumerate(truth.names):
        r = [abs(np.corrcoef(true[:, j], mixing[:, k])[0, 1]) for k in range(mixing.shape[1])]
        best = int(np.argmax(r))
        out[name] = (best, float(r[best]))
    return out
