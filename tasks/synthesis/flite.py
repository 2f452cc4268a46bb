"""Debian's flite binary as a second synthesizer, used when it is on PATH."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from tasks.synthesis.voices import Voice

FLITE_VOICES = ("kal", "slt", "awb", "rms", "kal16")


@cache
def flite_voices() -> tuple[str, ...]:
    """The flite voices available, or () when the `flite` binary is not on PATH."""
    binary = shutil.which("flite")
    if binary is None:
        return ()
    try:
        listed = subprocess.run(
            [binary, "-lv"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    names = set(listed.replace(":", " ").split())
    return tuple(v for v in FLITE_VOICES if v in names)


def flite_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Synthesise with the flite binary (float samples and their rate)."""
    binary = shutil.which("flite")
    if binary is None:
        raise ValueError(f"voice {voice.voice_id!r} needs the `flite` binary, not found on PATH")
    with tempfile.TemporaryDirectory(prefix="voicecycle-flite-") as tmp:
        out = Path(tmp) / "out.wav"
        cmd = [
            binary,
            "-voice",
            voice.variant,
            "--setf",
            f"duration_stretch={175 / voice.rate:.4f}",
            "-t",
            text,
            "-o",
            str(out),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0 or not out.exists():
            raise RuntimeError(f"flite failed for {voice.voice_id}: {result.stderr.strip()[:300]}")
        audio, rate = sf.read(out, dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(rate)
