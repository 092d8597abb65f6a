"""RADAR: the paper's windowed covariance of complex returns, a synthetic generator, an importer.

Pipeline (as in SPDNetNAS/SPDNetBN): a complex 1-D signal of length ``T`` is cut into windows
of 20 samples with hop 10, giving a ``20 × W`` matrix (``W = ⌊(T − 20)/10⌋ + 1``); the sample
is the covariance over the ``W`` windows of the 20-dimensional window vectors. The reference
code averages the real and imaginary parts of the complex covariance, which is not symmetric
(the imaginary part is antisymmetric); we take the real part of the Hermitian covariance
(``spdnas.geometry.covariance`` on complex input), with Ledoit–Wolf shrinkage by default.

The synthetic stand-in has three classes, each a physical model sampled at PRF 1 kHz with
λ = 3 cm, plus complex white noise at a per-sample SNR of ``snr_db ± snr_jitter_db``:

- **drone** — body echo at the Doppler ``2v/λ`` of its radial velocity, plus the rotor
  micro-Doppler of ``N`` ∈ {2, 3, 4} blades of length 5–15 cm spinning at 20–80 rev/s
  (Chen's rotating-blade model: ``Σ_k sinc(Φ_k) e^{−jΦ_k}``, ``Φ_k = (2πL/λ) cos β
  sin(Ωt + 2πk/N)``), aliased by the 1 kHz PRF as in a real low-PRF radar;
- **bird** — body echo modulated in amplitude and phase by the 2–12 Hz wing beat;
- **clutter** — a narrow zero-Doppler AR(1) process (pole 0.9–0.995).

Drones and birds share the radial-velocity range, so the body line alone does not separate
them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from spdnas.data.dataset import DatasetMeta, SPDDataset
from spdnas.data.registry import register
from spdnas.data.sources.common import assemble, label_from_name, load_npy, sorted_files
from spdnas.geometry import covariance

WINDOW = 20
HOP = 10
MIN_LENGTH = WINDOW + HOP
"""Two windows: the covariance of a single centred window is zero."""
PRF_HZ = 1000.0
WAVELENGTH_M = 0.03
MAX_SPEED_MS = 6.0
CLASS_NAMES = ("drone", "bird", "clutter")


def window_signals(signals: Tensor, window: int = WINDOW, hop: int = HOP) -> Tensor:
    """Cut signals into overlapping windows.

    Parameters
    ----------
    signals : Tensor, shape (..., T), complex or real, ``T ≥ window``
    window, hop : int

    Returns
    -------
    Tensor, shape (..., window, W) with ``W = (T − window) // hop + 1``
        Column ``w`` holds ``signals[..., w·hop : w·hop + window]``.
    """
    if signals.shape[-1] < window:
        raise ValueError(f"window_signals: signal length {signals.shape[-1]} < window {window}")
    return signals.unfold(-1, window, hop).transpose(-1, -2)


def radar_covariances(signals: Tensor, shrinkage: float | str = "ledoit-wolf") -> Tensor:
    """Windowed covariance of complex radar returns (the RADAR sample construction).

    Parameters
    ----------
    signals : Tensor, shape (N, T), complex
    shrinkage : float or "ledoit-wolf"

    Returns
    -------
    Tensor, shape (N, 20, 20), float64
    """
    return covariance(window_signals(signals.to(torch.complex128)), shrinkage)


def _body(rng: np.random.Generator, count: int, t: np.ndarray) -> np.ndarray:
    """Unit echo at a random radial velocity's Doppler, shape (count, T)."""
    doppler = 2 * rng.uniform(-MAX_SPEED_MS, MAX_SPEED_MS, count) / WAVELENGTH_M
    phase = rng.uniform(0, 2 * np.pi, count)
    return np.exp(1j * (2 * np.pi * doppler[:, None] * t + phase[:, None]))


def _drone(rng: np.random.Generator, count: int, t: np.ndarray) -> np.ndarray:
    """Body echo plus rotor micro-Doppler, shape (count, T)."""
    blades = rng.integers(2, 5, count)
    spin = 2 * np.pi * rng.uniform(20, 80, count)
    length = rng.uniform(0.05, 0.15, count)
    cos_aspect = rng.uniform(0.3, 1.0, count)
    start = rng.uniform(0, 2 * np.pi, count)
    rotor_to_body = rng.uniform(0.4, 1.2, count)
    rotor = np.zeros((count, len(t)), dtype=complex)
    for k in range(int(blades.max())):
        angle = spin[:, None] * t + start[:, None] + 2 * np.pi * k / blades[:, None]
        phi = (2 * np.pi * length * cos_aspect / WAVELENGTH_M)[:, None] * np.sin(angle)
        rotor += (k < blades)[:, None] * np.sinc(phi / np.pi) * np.exp(-1j * phi)
    rotor /= np.sqrt(np.mean(np.abs(rotor) ** 2, axis=1, keepdims=True))
    return _body(rng, count, t) * (1 + rotor_to_body[:, None] * rotor)


def _bird(rng: np.random.Generator, count: int, t: np.ndarray) -> np.ndarray:
    """Body echo with wing-beat amplitude and phase (frequency) modulation, shape (count, T)."""
    beat = 2 * np.pi * rng.uniform(2, 12, count)[:, None]
    am_depth = rng.uniform(0.2, 0.8, count)[:, None]
    wing_phase_index = (4 * np.pi * rng.uniform(0.005, 0.03, count) / WAVELENGTH_M)[:, None]
    offset = rng.uniform(0, 2 * np.pi, count)[:, None]
    envelope = 1 + am_depth * np.sin(beat * t + offset)
    return _body(rng, count, t) * envelope * np.exp(1j * wing_phase_index * np.cos(beat * t + offset))


def _clutter(rng: np.random.Generator, count: int, t: np.ndarray) -> np.ndarray:
    """Narrow zero-Doppler AR(1) process with unit stationary variance, shape (count, T)."""
    pole = rng.uniform(0.9, 0.995, count)
    innovations = (rng.standard_normal((count, len(t))) + 1j * rng.standard_normal((count, len(t))))
    innovations /= np.sqrt(2)
    out = np.empty_like(innovations)
    out[:, 0] = innovations[:, 0]
    scale = np.sqrt(1 - pole**2)
    for i in range(1, len(t)):
        out[:, i] = pole * out[:, i - 1] + scale * innovations[:, i]
    return out


def _class_counts(n_samples: int, class_balance) -> np.ndarray:
    """Samples per class from relative weights, by largest remainder."""
    weights = np.ones(len(CLASS_NAMES)) if class_balance is None else np.asarray(class_balance, float)
    if weights.shape != (len(CLASS_NAMES),) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"radar-synth: class_balance must be {len(CLASS_NAMES)} non-negative weights "
                         f"for {CLASS_NAMES}, got {class_balance}")
    exact = weights / weights.sum() * n_samples
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n_samples - counts.sum()]] += 1
    return counts


def synthesize_signals(n_samples: int = 3000, *, snr_db: float = 5.0, snr_jitter_db: float = 3.0,
                       class_balance=None, length: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Complex radar returns of the three classes (see the module docstring).

    Parameters
    ----------
    n_samples : int
    snr_db : float
        Mean signal-to-noise ratio (signal power over unit noise power).
    snr_jitter_db : float
        Per-sample SNR is uniform in ``snr_db ± snr_jitter_db``.
    class_balance : sequence of 3 floats, optional
        Relative class weights (drone, bird, clutter); equal by default.
    length : int
        Samples per signal (≥ 30, two windows; the paper's setting needs ≥ 210 for ≥ 20 windows).
    seed : int

    Returns
    -------
    signals : ndarray, shape (n_samples, length), complex128
    labels : ndarray, shape (n_samples,), int64, in shuffled order
    """
    if n_samples < len(CLASS_NAMES):
        raise ValueError(f"radar-synth: n_samples must be ≥ {len(CLASS_NAMES)} (one per class), "
                         f"got {n_samples}")
    if snr_jitter_db < 0:
        raise ValueError(f"radar-synth: snr_jitter_db must be ≥ 0, got {snr_jitter_db}")
    if length < MIN_LENGTH:
        raise ValueError(f"radar-synth: length must be ≥ {MIN_LENGTH} (two windows of {WINDOW}, hop {HOP}; "
                         f"one window has no covariance), got {length}")
    rng = np.random.default_rng(seed)
    t = np.arange(length) / PRF_HZ
    counts = _class_counts(n_samples, class_balance)
    makers = (_drone, _bird, _clutter)
    clean = np.concatenate([make(rng, int(c), t) for make, c in zip(makers, counts, strict=True)])
    labels = np.repeat(np.arange(len(CLASS_NAMES)), counts)
    clean /= np.sqrt(np.mean(np.abs(clean) ** 2, axis=1, keepdims=True))
    snr = snr_db + rng.uniform(-snr_jitter_db, snr_jitter_db, n_samples)
    noise = (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)) / np.sqrt(2)
    signals = 10 ** (snr[:, None] / 20) * clean + noise
    order = rng.permutation(n_samples)
    return signals[order], labels[order]


def _meta(name: str, source: str, licence: str, shrinkage, extra: dict) -> DatasetMeta:
    provenance = {"covariance": f"real part of the Hermitian covariance of windows {WINDOW}, hop {HOP}; "
                                f"shrinkage {shrinkage}", **extra}
    return DatasetMeta(name=name, n=WINDOW, class_names=CLASS_NAMES, source=source, licence=licence,
                       provenance=provenance)


def _sample_name(index: int, label: int) -> str:
    return f"sample_{index:05d}_{label}"


@register("radar-synth", "synthetic 3-class radar returns (drone/bird/clutter) → 20×20 covariances")
def build_radar_synth(n_samples: int = 3000, snr_db: float = 5.0, snr_jitter_db: float = 3.0,
                      class_balance=None, length: int = 256, seed: int = 0, split_seed: int = 0,
                      fractions=None, shrinkage: float | str = "ledoit-wolf",
                      raw_dir: str | None = None) -> SPDDataset:
    """The system's default dataset: synthetic RADAR (see the module docstring).

    Parameters
    ----------
    n_samples, snr_db, snr_jitter_db, class_balance, length, seed
        See :func:`synthesize_signals`.
    split_seed : int
    fractions : split fractions, default (0.5, 0.25, 0.25) as in the paper
    shrinkage : float or "ledoit-wolf"
    raw_dir : str, optional
        Also write the original layout there: one complex ``.npy`` per sample named
        ``sample_XXXXX_<label>.npy``. Importing it with ``radar-npy`` (same split parameters)
        reproduces this dataset exactly.

    Returns
    -------
    SPDDataset with n = 20, 3 classes.
    """
    signals, labels = synthesize_signals(n_samples, snr_db=snr_db, snr_jitter_db=snr_jitter_db,
                                         class_balance=class_balance, length=length, seed=seed)
    names = [_sample_name(i, int(y)) for i, y in enumerate(labels)]
    if raw_dir is not None:
        folder = Path(raw_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        if any(f.suffix.lower() == ".npy" for f in folder.iterdir()):
            raise FileExistsError(f"radar-synth: {folder} already holds .npy files; choose an empty raw_dir")
        for name, signal in zip(names, signals, strict=True):
            np.save(folder / f"{name}.npy", signal)
    matrices = radar_covariances(torch.from_numpy(signals), shrinkage)
    meta = _meta("radar-synth", "spdnas synthetic radar generator (spdnas.data.sources.radar)",
                 "generated data; no third-party rights", shrinkage, {"prf_hz": PRF_HZ,
                                                                      "wavelength_m": WAVELENGTH_M})
    return assemble(matrices, labels, names, meta, fractions=fractions, seed=split_seed)


@register("radar-npy", "import the original RADAR layout: one complex .npy signal per sample")
def import_radar_npy(src: str, split_seed: int = 0, fractions=None,
                     shrinkage: float | str = "ledoit-wolf") -> SPDDataset:
    """Import RADAR signals: ``src/*.npy``, one complex 1-D signal each, label = last ``_`` token.

    Signals may differ in length (each ≥ 30: two windows). The split is drawn as in ``radar-synth``.

    Parameters
    ----------
    src : str
        Folder of ``.npy`` files.
    split_seed, fractions, shrinkage
        As in :func:`build_radar_synth`.
    """
    files = sorted_files(Path(src).expanduser(), (".npy",))
    labels = [label_from_name(f, len(CLASS_NAMES)) for f in files]
    matrices = []
    for f in files:
        signal = load_npy(f)
        if not np.issubdtype(signal.dtype, np.number):
            raise ValueError(f"{f}: expected a numeric signal, got dtype {signal.dtype}")
        if signal.ndim != 1 or len(signal) < MIN_LENGTH:
            raise ValueError(f"{f}: expected a 1-D signal of length ≥ {MIN_LENGTH} (two windows of {WINDOW}, "
                             f"hop {HOP}), got shape {signal.shape}")
        matrices.append(radar_covariances(torch.from_numpy(signal.astype(np.complex128))[None], shrinkage))
    meta = _meta("radar", f"RADAR .npy files imported from {src}", "as licensed by the data owner",
                 shrinkage, {})
    return assemble(torch.cat(matrices), labels, [f.stem for f in files], meta, fractions=fractions,
                    seed=split_seed)
