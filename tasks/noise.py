"""Synthetic car-cabin noise, real noise-loop loading and SNR-exact mixing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import signal
from scipy.io import wavfile

from models.audio import resample

NOISE_TYPES: tuple[str, ...] = ("engine", "road", "wind", "fan", "cabin")
NOISE_FILE_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")

SPEED_RANGE_KMH: tuple[float, float] = (30.0, 130.0)
RPM_RANGE: tuple[float, float] = (1200.0, 3500.0)
MIN_SAMPLE_RATE = 4000
CLIP_LEVEL = 0.999

# Filters start from rest; generating this much extra audio and dropping it hides the onset ramp.
_WARMUP_S = 0.25
_EPS = 1e-20


def _check_sample_rate(sample_rate: int) -> int:
    """Return sample_rate as int, or raise if it is not a usable positive integer rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be >= {MIN_SAMPLE_RATE} Hz, got {sample_rate}")
    return int(sample_rate)


def _num_samples(duration_s: float, sample_rate: int) -> int:
    """Return round(duration_s * sample_rate), requiring at least one sample."""
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be a positive finite number, got {duration_s!r}")
    n = round(duration_s * sample_rate)
    if n < 1:
        raise ValueError(
            f"duration_s={duration_s} at {sample_rate} Hz gives 0 samples; need at least 1"
        )
    return n


def _check_1d(name: str, audio: np.ndarray) -> np.ndarray:
    """Return audio as a float64 1-D finite non-empty array or raise ValueError."""
    arr = np.asarray(audio, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D mono audio, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values")
    return arr


def _power(x: np.ndarray) -> float:
    """Mean power of a signal."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def _unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale a signal to unit RMS."""
    return x / math.sqrt(max(_power(x), _EPS))


def _corner(hz: float, sample_rate: int) -> float:
    """Clamp a filter corner safely below Nyquist so low sample rates still work."""
    return min(hz, 0.45 * sample_rate)


def _lowpass(x: np.ndarray, hz: float, sample_rate: int, order: int = 2) -> np.ndarray:
    """Butterworth low-pass."""
    sos = signal.butter(order, _corner(hz, sample_rate), "lowpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, hz: float, sample_rate: int, order: int = 1) -> np.ndarray:
    """Butterworth high-pass."""
    sos = signal.butter(order, _corner(hz, sample_rate), "highpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _bandpass(x: np.ndarray, lo: float, hi: float, sample_rate: int, order: int = 2) -> np.ndarray:
    """Butterworth band-pass with the upper edge clamped below Nyquist."""
    hi = _corner(hi, sample_rate)
    lo = min(lo, 0.5 * hi)
    sos = signal.butter(order, (lo, hi), "bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, x)


def _slow_random(n: int, sample_rate: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random control curve that changes about rate_hz times a second."""
    n_points = int(math.ceil(n / sample_rate * rate_hz)) + 2
    points = rng.standard_normal(n_points)
    # Linear interpolation of sparse random points is a cheap, transient-free smooth wander.
    return np.interp(np.arange(n) * (rate_hz / sample_rate), np.arange(n_points), points)


def _engine(n: int, sr: int, rng: np.random.Generator, speed_kmh: float, rpm: float) -> np.ndarray:
    """Firing-frequency harmonics with RPM wander and light amplitude modulation."""
    del speed_kmh  # engine order content follows rpm only
    rpm_t = rpm * (1.0 + 0.015 * _slow_random(n, sr, 1.0, rng))
    # 4-stroke 4-cylinder: two firings per crank revolution.
    firing_hz = rpm_t / 60.0 * 2.0
    phase = 2.0 * np.pi * np.cumsum(firing_hz) / sr
    out = np.zeros(n)
    for k in range(1, 9):
        if k * float(firing_hz.max()) >= 0.45 * sr:
            break
        out += k**-1.3 * np.sin(k * phase + rng.uniform(0.0, 2.0 * np.pi))
    # Crank order 1 (half the firing order) is a small residual imbalance.
    out += 0.12 * np.sin(0.5 * phase + rng.uniform(0.0, 2.0 * np.pi))
    out *= 1.0 + 0.08 * _slow_random(n, sr, 4.0, rng)
    out += 0.08 * _unit_rms(_lowpass(rng.standard_normal(n), 400.0, sr))
    return _lowpass(out, 800.0, sr, order=4)


def _road(n: int, sr: int, rng: np.random.Generator, speed_kmh: float, rpm: float) -> np.ndarray:
    """Tyre/road rumble: low-passed coloured noise plus the tyre-cavity resonance."""
    del rpm
    corner = 150.0 + 1.2 * speed_kmh  # rougher, brighter rumble at speed, ~190-310 Hz
    rumble = _bandpass(rng.standard_normal(n), 20.0, corner, sr, order=2)
    # Air in the tyre resonates near 200-230 Hz; it is a well-known narrow cabin boom.
    f_cav = rng.uniform(200.0, 230.0)
    cavity = _bandpass(rng.standard_normal(n), f_cav * 0.95, f_cav * 1.05, sr, order=2)
    return _unit_rms(rumble) + 0.3 * _unit_rms(cavity)


def _wind(n: int, sr: int, rng: np.random.Generator, speed_kmh: float, rpm: float) -> np.ndarray:
    """Broadband aerodynamic noise with a gentle (6 dB/octave) high-frequency roll-off."""
    del rpm
    corner = 400.0 + 4.0 * speed_kmh
    return _lowpass(_highpass(rng.standard_normal(n), 80.0, sr), corner, sr, order=1)


def _fan(n: int, sr: int, rng: np.random.Generator, speed_kmh: float, rpm: float) -> np.ndarray:
    """Climate-control blower: band-passed noise with a faint blade-pass tone."""
    del speed_kmh, rpm
    band = _unit_rms(_bandpass(rng.standard_normal(n), 300.0, 2000.0, sr, order=2))
    blade_hz = _corner(rng.uniform(150.0, 400.0), sr)
    t = np.arange(n) / sr
    tone = math.sqrt(2.0) * np.sin(2.0 * np.pi * blade_hz * t + rng.uniform(0.0, 2.0 * np.pi))
    return band + 0.2 * tone


def _cabin(n: int, sr: int, rng: np.random.Generator, speed_kmh: float, rpm: float) -> np.ndarray:
    """Speed/rpm-dependent mixture of engine, road, wind and fan noise."""
    gains = {
        "engine": 0.8 * math.sqrt(rpm / 2000.0),
        "road": 0.3 + 0.7 * speed_kmh / 130.0,
        # Aerodynamic noise grows roughly with speed squared; weight keeps the cabin low-heavy.
        "wind": 0.35 * (speed_kmh / 100.0) ** 2,
        "fan": rng.uniform(0.05, 0.25),
    }
    out = np.zeros(n)
    for kind, gain in gains.items():
        out += gain * _unit_rms(_GENERATORS[kind](n, sr, rng, speed_kmh, rpm))
    return out


_GENERATORS: dict[str, Callable[[int, int, np.random.Generator, float, float], np.ndarray]] = {
    "engine": _engine,
    "road": _road,
    "wind": _wind,
    "fan": _fan,
    "cabin": _cabin,
}


def car_noise(
    kind: str,
    duration_s: float,
    sample_rate: int,
    rng: np.random.Generator,
    speed_kmh: float | None = None,
    rpm: float | None = None,
) -> np.ndarray:
    """Generate unit-RMS float32 car noise of one of NOISE_TYPES (random speed/rpm if None)."""
    if kind not in _GENERATORS:
        raise ValueError(f"kind must be one of {NOISE_TYPES}, got {kind!r}")
    sr = _check_sample_rate(sample_rate)
    n = _num_samples(duration_s, sr)
    # Draw both operating-point values always so a kind's stream does not depend on which were set.
    drawn_speed = rng.uniform(*SPEED_RANGE_KMH)
    drawn_rpm = rng.uniform(*RPM_RANGE)
    speed = drawn_speed if speed_kmh is None else float(speed_kmh)
    engine_rpm = drawn_rpm if rpm is None else float(rpm)
    if not math.isfinite(speed) or not 0.0 <= speed <= 300.0:
        raise ValueError(f"speed_kmh must be within [0, 300], got {speed_kmh!r}")
    if not math.isfinite(engine_rpm) or not 300.0 <= engine_rpm <= 10000.0:
        raise ValueError(f"rpm must be within [300, 10000], got {rpm!r}")
    warmup = int(_WARMUP_S * sr)
    out = _GENERATORS[kind](n + warmup, sr, rng, speed, engine_rpm)[warmup:]
    return _unit_rms(out).astype(np.float32)


def _pcm_to_float(data: np.ndarray) -> np.ndarray:
    """Convert integer PCM from scipy.io.wavfile to float64 in [-1, 1]."""
    if data.dtype == np.uint8:
        return (data.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float64) / float(-np.iinfo(data.dtype).min)
    return data.astype(np.float64)


def _read_any(path: Path) -> tuple[np.ndarray, int]:
    """Read (frames, channels) float audio and its rate; soundfile first, scipy WAV fallback."""
    try:
        import soundfile as sf
    except OSError:
        # soundfile imports but fails to dlopen libsndfile on hosts without it; plain PCM/float
        # WAV still works through scipy so the common case does not need the system library.
        if path.suffix.lower() != ".wav":
            raise ValueError(
                f"cannot read noise recording {path}: libsndfile is not installed "
                "(only .wav can be read without it)"
            ) from None
        try:
            file_sr, data = wavfile.read(str(path))
        except Exception as exc:  # scipy raises ValueError, EOFError, struct.error, ...
            raise ValueError(f"cannot read noise recording {path}: {exc}") from exc
        data = _pcm_to_float(data)
        return (data[:, None] if data.ndim == 1 else data), int(file_sr)
    try:
        data, file_sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several types (LibsndfileError, RuntimeError)
        raise ValueError(f"cannot read noise recording {path}: {exc}") from exc
    return data, int(file_sr)


def _read_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Read one audio file as mono float32 at sample_rate, or raise ValueError naming it."""
    data, file_sr = _read_any(path)
    if data.size == 0:
        raise ValueError(f"noise recording {path} is empty")
    mono = data.mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise ValueError(f"noise recording {path} contains NaN or inf samples")
    if file_sr <= 0:
        raise ValueError(f"noise recording {path} has an invalid sample rate {file_sr}")
    mono = resample(mono, file_sr, sample_rate)
    if mono.size == 0 or _power(mono) == 0.0:
        raise ValueError(f"noise recording {path} is silent or too short after resampling")
    return mono.astype(np.float32)


def load_noise_recordings(noise_dir: Path, sample_rate: int) -> dict[str, np.ndarray]:
    """Load every wav/flac/ogg in noise_dir as mono float32 at sample_rate, keyed by file stem."""
    sr = _check_sample_rate(sample_rate)
    noise_dir = Path(noise_dir)
    if not noise_dir.is_dir():
        raise ValueError(f"noise_dir must be an existing directory, got {noise_dir}")
    paths = sorted(
        p for p in noise_dir.iterdir() if p.is_file() and p.suffix.lower() in NOISE_FILE_SUFFIXES
    )
    recordings: dict[str, np.ndarray] = {}
    sources: dict[str, Path] = {}
    for path in paths:
        if path.stem in sources:
            raise ValueError(
                f"noise recordings {sources[path.stem]} and {path} share the stem {path.stem!r}"
            )
        sources[path.stem] = path
        recordings[path.stem] = _read_mono(path, sr)
    return recordings


def _seamless_loop(recording: np.ndarray, sample_rate: int) -> np.ndarray:
    """Return one period of a loop whose wrap point is crossfaded (equal-power, <= 50 ms)."""
    fade = min(int(0.05 * sample_rate), recording.size // 4)
    if fade < 2:
        return recording
    period = recording.size - fade
    loop = recording[:period].copy()
    theta = np.linspace(0.0, np.pi / 2.0, fade)
    # The head fades in under the tail's continuation, so loop[-1] -> loop[0] is the original
    # recording's own continuity (rec[period-1] -> rec[period]).
    loop[:fade] = recording[:fade] * np.sin(theta) + recording[period:] * np.cos(theta)
    return loop


def noise_from_recording(
    recording: np.ndarray, duration_s: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Cut a unit-RMS segment at a random offset, looping with a crossfade if too short."""
    rec = _check_1d("recording", recording)
    sr = _check_sample_rate(sample_rate)
    n = _num_samples(duration_s, sr)
    if _power(rec) == 0.0:
        raise ValueError("recording is silent (all zeros)")
    if rec.size >= n:
        start = int(rng.integers(0, rec.size - n + 1))
        out = rec[start : start + n]
    else:
        loop = _seamless_loop(rec, sr)
        start = int(rng.integers(0, loop.size))
        out = np.resize(np.roll(loop, -start), n)
    if _power(out) == 0.0:
        raise ValueError("the selected recording segment is silent; trim silence from the file")
    return _unit_rms(out).astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add noise (looped/cropped to speech length) at exactly snr_db; scale down if it clips."""
    s = _check_1d("speech", speech)
    nz = _check_1d("noise", noise)
    if not math.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db!r}")
    p_speech = _power(s)
    if p_speech == 0.0:
        raise ValueError("speech is silent (power 0); SNR is undefined")
    nz = np.resize(nz, s.size)  # np.resize tiles when the noise is shorter
    p_noise = _power(nz)
    if p_noise == 0.0:
        raise ValueError("noise is silent (power 0) over the speech length")
    gain = math.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    mixture = s + gain * nz
    peak = float(np.max(np.abs(mixture)))
    if peak > CLIP_LEVEL:
        # Scaling speech and noise together leaves their power ratio, i.e. the SNR, unchanged.
        mixture *= CLIP_LEVEL / peak
    return mixture.astype(np.float32)


def measured_snr_db(speech: np.ndarray, mixture: np.ndarray) -> float:
    """SNR of mixture, taking the least-squares-scaled speech as signal and the rest as noise."""
    s = _check_1d("speech", speech)
    m = _check_1d("mixture", mixture)
    if s.size != m.size:
        raise ValueError(f"speech and mixture lengths differ: {s.size} vs {m.size}")
    ss = float(np.dot(s, s))
    if ss == 0.0:
        raise ValueError("speech is silent (power 0); SNR is undefined")
    g = float(np.dot(s, m)) / ss
    residual = m - g * s
    return 10.0 * math.log10(max(_power(g * s), _EPS) / max(_power(residual), _EPS))


def _welch(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD with ~4 Hz resolution at 16 kHz (shorter for short clips)."""
    nperseg = min(audio.size, 4096)
    return signal.welch(audio, fs=sample_rate, nperseg=nperseg)


def band_energy_share(audio: np.ndarray, sample_rate: int, cutoff_hz: float = 500.0) -> float:
    """Share of spectral energy below cutoff_hz (Welch PSD)."""
    x = _check_1d("audio", audio)
    sr = int(sample_rate)
    if sr <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not 0.0 < cutoff_hz <= sr / 2:
        raise ValueError(f"cutoff_hz must be in (0, {sr / 2}], got {cutoff_hz}")
    freqs, psd = _welch(x, sr)
    total = float(psd.sum())
    if total <= 0.0:
        raise ValueError("audio is silent; band energy share is undefined")
    return float(psd[freqs < cutoff_hz].sum()) / total


def plot_noise_summary(
    examples: dict[str, np.ndarray],
    sample_rate: int,
    snrs_db: Sequence[float],
    out_path: Path,
) -> Path:
    """Save a PNG: Welch spectra of each noise example (left) and a histogram of SNRs (right)."""
    # Figure + Agg canvas directly: no pyplot global state, safe in worker threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not examples:
        raise ValueError("examples must contain at least one noise signal")
    out_path = Path(out_path)
    fig = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(fig)
    ax_psd, ax_snr = fig.subplots(1, 2)
    for name, audio in examples.items():
        freqs, psd = _welch(_check_1d(f"examples[{name!r}]", audio), sample_rate)
        keep = freqs > 0  # log-x axis cannot show DC
        ax_psd.semilogx(freqs[keep], 10.0 * np.log10(psd[keep] + _EPS), label=name, lw=1.2)
    ax_psd.axvline(500.0, color="k", ls="--", lw=1, label="500 Hz")
    ax_psd.set_xlabel("Frequency (Hz)")
    ax_psd.set_ylabel("PSD (dB/Hz)")
    ax_psd.set_title("Average noise spectrum (Welch)")
    ax_psd.grid(True, which="both", alpha=0.3)
    ax_psd.legend(fontsize=8)
    snrs = np.asarray(list(snrs_db), dtype=np.float64)
    if snrs.size:
        ax_snr.hist(snrs, bins=min(30, max(5, snrs.size // 5)), color="tab:blue", alpha=0.8)
    else:
        ax_snr.text(0.5, 0.5, "no SNRs", ha="center", va="center", transform=ax_snr.transAxes)
    ax_snr.set_xlabel("SNR (dB)")
    ax_snr.set_ylabel("Count")
    ax_snr.set_title("SNRs used for mixing")
    fig.suptitle("Car-cabin noise augmentation summary")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png", dpi=100)
    return out_path
