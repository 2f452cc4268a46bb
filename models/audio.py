"""Audio in numbers, without torch: the sample rate, one resampler, decoding, audio features.

Everything that turns bytes or foreign-rate audio into the recogniser's 16 kHz mono float32
goes through this module: the service, ingestion, the MLflow pyfunc and the simulator. It
imports no torch, so the request path's decoding and the contracts can use it cheaply.

`decode_audio` is the one upload decoder: it checks what a client sent (empty, truncated,
undecodable, rate, channels, duration, NaN) and raises `UnusableAudio` with a stable `code`
that the service answers as a 4xx and the pyfunc raises as is. `compute_audio_features` is
the cheap per-clip summary that ingestion checks and production drift monitoring compare.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # the recogniser's input rate; the scope's audio.sample_rate must equal it


def resample(samples: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float audio from ``rate_in`` to ``rate_out`` Hz (soxr, high quality), as float32."""
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
    mono = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or mono.size == 0:
        return mono
    return np.asarray(soxr.resample(mono, rate_in, rate_out, quality="HQ"), dtype=np.float32)


# -- decoding an upload ---------------------------------------------------------------------

MIN_INPUT_RATE = 4000
MAX_INPUT_RATE = 192000
MAX_CHANNELS = 32
MIN_DURATION_MS = 25.0  # one analysis window of the log-mel front end
UNKNOWN_WAV_SIZE = 0x7FFF0000  # placeholders written by streaming WAV writers (sox, ffmpeg)


class UnusableAudio(ValueError):
    """Audio that cannot be transcribed; `code` names the problem (e.g. "audio_too_long")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # (S,) float32 16 kHz mono
    source_rate: int
    channels: int


# WAV format tags whose frames have a fixed size (PCM, IEEE float, A-law, mu-law, extensible)
_FIXED_FRAME_FORMATS = {1, 3, 6, 7, 0xFFFE}
_MAX_CHUNKS = 4096  # a WAV with more chunks than this before its samples is not an upload


def wav_header_problem(stream: BinaryIO, size: int) -> str | None:
    """For a RIFF/WAVE stream of `size` bytes, why its header disagrees with its bytes (None
    if it agrees or is not a WAV). Reads only the chunk headers and the fmt chunk.

    libsndfile silently returns the frames present when a WAV is cut short, and trusts a
    header whose channel count or frame size contradicts its byte rate; such an upload must
    be refused, not transcribed in part as if it were the whole query.
    """
    stream.seek(0)
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    for _ in range(_MAX_CHUNKS):
        if pos + 8 > size:
            return None  # no data chunk: libsndfile refuses it with its own words
        stream.seek(pos)
        header = stream.read(8)
        chunk, chunk_size = header[:4], int.from_bytes(header[4:8], "little")
        if chunk == b"fmt ":
            fmt = stream.read(min(chunk_size, 16))
            if len(fmt) < 16:
                return f"WAV fmt chunk is {len(fmt)} bytes; at least 16 are needed"
            tag, channels, rate = struct.unpack("<HHI", fmt[:8])
            byte_rate, block_align, bits = struct.unpack("<IHH", fmt[8:16])
            if tag in _FIXED_FRAME_FORMATS:
                expected = channels * ((bits + 7) // 8)
                if block_align != expected:
                    return (
                        f"WAV header disagrees with itself: {channels} channels of {bits} bits "
                        f"make {expected}-byte frames, the header declares {block_align}"
                    )
                if byte_rate != rate * block_align:
                    return (
                        f"WAV header disagrees with itself: {rate} Hz x {block_align}-byte "
                        f"frames is {rate * block_align} bytes/s, it declares {byte_rate}"
                    )
            else:
                block_align = 0  # compressed frames: libsndfile checks them
        elif chunk == b"data":
            if chunk_size == 0 or chunk_size >= UNKNOWN_WAV_SIZE:  # streaming writers
                return None
            have = size - (pos + 8)
            if have < chunk_size:
                return (
                    f"truncated WAV: the header declares {chunk_size} bytes of samples, "
                    f"{have} arrived"
                )
            if block_align and chunk_size % block_align:
                return (
                    f"WAV data chunk of {chunk_size} bytes is not a whole number of "
                    f"{block_align}-byte frames"
                )
            return None
        pos += 8 + chunk_size + (chunk_size & 1)
    return f"WAV has more than {_MAX_CHUNKS} chunks before its samples"


def wav_truncation(data: bytes) -> str | None:
    """For a RIFF/WAVE upload, why its header disagrees with its bytes (None if it agrees)."""
    return wav_header_problem(io.BytesIO(data), len(data))


def read_bounded(stream: BinaryIO, max_duration_s: float) -> tuple[np.ndarray, int]:
    """(S, C) float32 samples and their rate, reading at most `max_duration_s` (+1 frame):
    a file that declares, or turns out to hold, more is refused as too long before it is
    decoded whole (a few KB of OGG can expand to gigabytes). Raises UnusableAudio."""
    try:
        with sf.SoundFile(stream) as audio_file:
            rate, channels = int(audio_file.samplerate), int(audio_file.channels)
            if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
                raise UnusableAudio(
                    "bad_sample_rate",
                    f"sample rate {rate} Hz is outside the accepted "
                    f"{MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz",
                )
            if not 1 <= channels <= MAX_CHANNELS:
                raise UnusableAudio(
                    "bad_channels", f"{channels} channels; expected 1 to {MAX_CHANNELS}"
                )
            declared = int(audio_file.frames)
            if 0 < declared and declared / rate > max_duration_s:
                raise _too_long(declared / rate, max_duration_s)
            limit = int(math.floor(max_duration_s * rate)) + 1
            audio = audio_file.read(limit, dtype="float32", always_2d=True)  # (S, C)
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError, OverflowError) as exc:
        if isinstance(exc, UnusableAudio):
            raise
        raise UnusableAudio(
            "undecodable_audio", f"not decodable as WAV, FLAC or OGG audio: {_reason(exc)}"
        ) from None
    if audio.shape[0] >= limit:
        raise UnusableAudio(
            "audio_too_long", f"audio lasts more than the limit of {max_duration_s:g} s"
        )
    return audio, rate


def read_audio_file(path: Path, max_duration_s: float) -> tuple[np.ndarray, int]:
    """A stored clip as (S, C) float32 samples and its rate, with the upload decoder's checks
    (a WAV header that disagrees with its bytes, at most `max_duration_s` decoded); raises
    UnusableAudio naming why, or OSError when the file cannot be opened."""
    with path.open("rb") as stream:
        problem = wav_header_problem(stream, path.stat().st_size)
        if problem:
            raise UnusableAudio("undecodable_audio", problem)
        stream.seek(0)
        return read_bounded(stream, max_duration_s)


def _reason(exc: Exception) -> str:
    """libsndfile's own words, without the in-memory file object's repr."""
    return str(getattr(exc, "error_string", None) or exc)


def _too_long(seconds: float, max_duration_s: float) -> UnusableAudio:
    return UnusableAudio(
        "audio_too_long", f"audio lasts {seconds:.2f} s; the limit is {max_duration_s:g} s"
    )


def decode_audio(
    data: bytes, max_duration_s: float, min_duration_ms: float = MIN_DURATION_MS
) -> DecodedAudio:
    """WAV/FLAC/OGG bytes -> checked 16 kHz mono float32; raises UnusableAudio naming why."""
    if not data:
        raise UnusableAudio("empty_upload", "the audio upload is empty (0 bytes)")
    problem = wav_truncation(data)
    if problem:
        raise UnusableAudio("undecodable_audio", problem)
    audio, rate = read_bounded(io.BytesIO(data), max_duration_s)
    duration_s = audio.shape[0] / rate
    if duration_s > max_duration_s:
        raise _too_long(duration_s, max_duration_s)
    if duration_s * 1000 < min_duration_ms:
        raise UnusableAudio(
            "audio_too_short",
            f"audio lasts {duration_s * 1000:.1f} ms; at least {min_duration_ms:g} ms is needed",
        )
    if not np.isfinite(audio).all():
        raise UnusableAudio("non_finite_samples", "the audio contains NaN or infinite samples")
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1)  # (S,)
    samples = np.ascontiguousarray(resample(mono, rate), dtype=np.float32)
    return DecodedAudio(samples, rate, audio.shape[1])


# -- audio features (ingestion checks, drift monitoring) -------------------------------------

SILENCE_DBFS = -120.0
CLIP_LEVEL = 0.999
LOW_BAND_HZ = 500.0
FRAME_MS = 20.0
SILENCE_REL_DB = 40.0
SILENCE_ABS_DBFS = -60.0
SNR_RANGE_DB: tuple[float, float] = (-10.0, 60.0)
ROLLOFF_SHARE = 0.85

_EPS = 1e-12  # power floor: 10*log10(1e-12) == -120 dB, the reported level of silence


@dataclass(frozen=True)
class AudioFeatures:
    """Scalar summary of one clip; all finite; dBFS is RMS-based (full-scale square = 0 dB)."""

    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    clipping_share: float  # share of samples with |x| >= 0.999
    silence_share: float  # 20 ms frames > 40 dB below the loudest frame or below -60 dBFS
    snr_db_estimate: float  # top-50% vs bottom-10% frame power, clipped to [-10, 60]
    spectral_centroid_hz: float
    spectral_bandwidth_hz: float
    spectral_rolloff_hz: float  # 85% of spectral energy lies below this frequency
    low_band_share: float  # spectral energy share below 500 Hz

    def as_dict(self) -> dict[str, float]:
        """Return the features as a flat name -> float mapping (for logging)."""
        return {name: float(value) for name, value in asdict(self).items()}


def _check_sample_rate(sample_rate: int) -> int:
    """Return sample_rate as int or raise ValueError if it is not a positive integer."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise ValueError(f"sample_rate must be an int, got {type(sample_rate).__name__}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return int(sample_rate)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    """Return audio as a float64 1-D finite non-empty array or raise ValueError."""
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f"audio must be 1-D mono, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("audio must not be empty")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"audio must be a real numeric array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError("audio contains NaN or inf values")
    return arr


def _power_db(power: np.ndarray) -> np.ndarray:
    """Powers to dB, floored at SILENCE_DBFS so silence never yields -inf."""
    return 10.0 * np.log10(np.maximum(power, _EPS))


def _db(power: float) -> float:
    """Scalar power to dB, floored at SILENCE_DBFS."""
    return 10.0 * math.log10(max(power, _EPS))


def _frame_powers(x: np.ndarray, frame_len: int) -> np.ndarray:
    """Mean power of consecutive non-overlapping frames; a partial tail frame counts on its own."""
    n_full = x.size // frame_len
    sq = np.square(x)
    powers = sq[: n_full * frame_len].reshape(n_full, frame_len).mean(axis=1)
    if x.size % frame_len:
        powers = np.append(powers, sq[n_full * frame_len :].mean())
    return powers


def _power_spectrum(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Averaged Hann-windowed power spectrum (~32 ms frames, 50% overlap) and its frequencies."""
    n_fft = 1 << max(4, math.ceil(math.log2(0.032 * sample_rate)))
    # Cheap mics add DC offset that would otherwise inflate low_band_share and drag the centroid.
    x = x - x.mean()
    if x.size < n_fft:
        frames = np.pad(x, (0, n_fft - x.size))[None, :]
    else:
        frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2]
    spec = np.fft.rfft(frames * np.hanning(n_fft), axis=1)
    power = np.mean(spec.real**2 + spec.imag**2, axis=0)
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate), power


def compute_audio_features(audio: np.ndarray, sample_rate: int) -> AudioFeatures:
    """Compute AudioFeatures for a mono clip; finite for any finite non-empty input."""
    x = _check_audio(audio)
    sr = _check_sample_rate(sample_rate)
    abs_x = np.abs(x)
    frame_pow = _frame_powers(x, max(1, round(FRAME_MS / 1000.0 * sr)))
    frame_db = _power_db(frame_pow)
    silent = (frame_db < frame_db.max() - SILENCE_REL_DB) | (frame_db < SILENCE_ABS_DBFS)

    sorted_pow = np.sort(frame_pow)
    k = sorted_pow.size
    top = sorted_pow[k - math.ceil(k / 2) :].mean()
    bottom = sorted_pow[: max(1, math.ceil(0.1 * k))].mean()
    snr = float(np.clip(_db(float(top)) - _db(float(bottom)), *SNR_RANGE_DB))

    freqs, power = _power_spectrum(x, sr)
    total = float(power.sum())
    if total > _EPS * power.size:
        weights = power / total
        centroid = float(np.dot(freqs, weights))
        bandwidth = math.sqrt(max(float(np.dot((freqs - centroid) ** 2, weights)), 0.0))
        rolloff_idx = int(np.searchsorted(np.cumsum(weights), ROLLOFF_SHARE))
        rolloff = float(freqs[min(rolloff_idx, freqs.size - 1)])
        low_share = float(weights[freqs < LOW_BAND_HZ].sum())
    else:  # silence (or pure DC): no spectral shape to describe
        centroid = bandwidth = rolloff = low_share = 0.0

    return AudioFeatures(
        duration_s=x.size / sr,
        rms_dbfs=_db(float(np.mean(np.square(x)))),
        peak_dbfs=_db(float(abs_x.max()) ** 2),
        clipping_share=float(np.mean(abs_x >= CLIP_LEVEL)),
        silence_share=float(np.mean(silent)),
        snr_db_estimate=snr,
        spectral_centroid_hz=centroid,
        spectral_bandwidth_hz=bandwidth,
        spectral_rolloff_hz=rolloff,
        low_band_share=low_share,
    )


def trim_silence(audio: np.ndarray, sample_rate: int, top_db: float, keep_ms: float) -> np.ndarray:
    """Trim leading/trailing 10 ms frames quieter than top_db below the loudest, keeping keep_ms."""
    x = _check_audio(audio)
    sr = _check_sample_rate(sample_rate)
    if not math.isfinite(top_db) or top_db <= 0:
        raise ValueError(f"top_db must be a positive finite number, got {top_db!r}")
    if not math.isfinite(keep_ms) or keep_ms < 0:
        raise ValueError(f"keep_ms must be a non-negative finite number, got {keep_ms!r}")
    out = np.asarray(audio, dtype=np.float32)
    frame_len = max(1, round(0.01 * sr))
    powers = _frame_powers(x, frame_len)
    if powers.max() == 0.0:
        return out
    # Relative to the loudest frame; it always passes, so non-silent input is never emptied.
    loud = np.flatnonzero(_power_db(powers) > _power_db(powers.max()) - top_db)
    keep = round(keep_ms / 1000.0 * sr)
    start = max(0, int(loud[0]) * frame_len - keep)
    end = min(x.size, (int(loud[-1]) + 1) * frame_len + keep)
    return out[start:end].copy()


def normalise_loudness(audio: np.ndarray, target_dbfs: float) -> np.ndarray:
    """Scale to target RMS dBFS, then scale down further if the peak would exceed 0.999."""
    x = _check_audio(audio)
    if not math.isfinite(target_dbfs):
        raise ValueError(f"target_dbfs must be finite, got {target_dbfs!r}")
    rms = math.sqrt(float(np.mean(np.square(x))))
    if rms == 0.0:
        return np.asarray(audio, dtype=np.float32).copy()
    y = x * (10.0 ** (target_dbfs / 20.0) / rms)
    peak = float(np.max(np.abs(y)))
    if peak > CLIP_LEVEL:
        y *= CLIP_LEVEL / peak
    return y.astype(np.float32)
