"""Debian's festival as a third synthesizer: diphone voices and one HTS (statistical) voice.

festival takes about half a second to start, so many utterances are spoken by one process
reading a Scheme script (`festival_synth_many`); a corpus shard speaks all its festival
utterances that way before its blocks are rendered.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    from tasks.synthesis.voices import Voice

# voice name -> (folder under /usr/share/festival/voices, synthesizer label)
FESTIVAL_VOICES: dict[str, tuple[str, str]] = {
    "kal_diphone": ("english/kal_diphone", "festival"),
    "ked_diphone": ("english/ked_diphone", "festival"),
    "cmu_us_slt_arctic_hts": ("us/cmu_us_slt_arctic_hts", "festival-hts"),
}
VOICE_ROOTS = (Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices"))
SECONDS_PER_UTTERANCE = 5.0  # generous timeout share per utterance of a batch


@cache
def festival_voices() -> tuple[str, ...]:
    """The festival voices installed, or () when the `festival` binary is not on PATH."""
    if shutil.which("festival") is None:
        return ()
    return tuple(
        name
        for name, (folder, _) in FESTIVAL_VOICES.items()
        if any((root / folder).is_dir() for root in VOICE_ROOTS)
    )


def _scheme_string(text: str) -> str:
    """A Scheme string literal of text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _script(items: Sequence[tuple[str, Voice]], out_dir: Path) -> str:
    """A festival script speaking every (text, voice) into out_dir/<k>.wav."""
    lines = []
    for k, (text, voice) in enumerate(items):
        # diphone voices follow Duration_Stretch; the HTS voice ignores it (neutral rate)
        lines.append(f"(voice_{voice.variant})")
        lines.append(f"(Parameter.set 'Duration_Stretch {175 / voice.rate:.4f})")
        path = _scheme_string(str(out_dir / f"{k}.wav"))
        lines.append(
            f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) {path} 'riff)"
        )
    return "\n".join(lines) + "\n"


def festival_synth_many(items: Sequence[tuple[str, Voice]]) -> list[tuple[np.ndarray, int]]:
    """Speak many (text, voice) pairs with one festival process: float samples and their rate."""
    if not items:
        return []
    binary = shutil.which("festival")
    if binary is None:
        raise ValueError(
            f"voice {items[0][1].voice_id!r} needs festival, which is not installed "
            "(apt: festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)"
        )
    with tempfile.TemporaryDirectory(prefix="voicecycle-festival-") as tmp:
        out_dir = Path(tmp)
        script = out_dir / "speak.scm"
        script.write_text(_script(items, out_dir), encoding="utf-8")
        result = subprocess.run(
            [binary, "-b", str(script)],
            capture_output=True,
            text=True,
            timeout=30 + SECONDS_PER_UTTERANCE * len(items),
            check=False,
        )
        out = []
        for k, (_, voice) in enumerate(items):
            wav = out_dir / f"{k}.wav"
            if result.returncode != 0 or not wav.is_file():
                raise RuntimeError(
                    f"festival failed for {voice.voice_id} (exit {result.returncode}): "
                    f"{(result.stderr or result.stdout).strip()[:300]}"
                )
            audio, rate = sf.read(wav, dtype="float32", always_2d=True)
            out.append((audio.mean(axis=1), int(rate)))
    return out


def festival_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Speak one text with festival (a process of its own: batch with festival_synth_many)."""
    return festival_synth_many([(text, voice)])[0]
