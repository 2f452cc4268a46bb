"""espeak-ng through ctypes, on the library espeakng-loader ships: one engine per process.

espeak keeps some generator state between utterances (pitch-flutter phase, and more: the same
text with the same voice renders differently the second time), and neither re-selecting the
voice nor re-initialising the library resets it. What a process speaks therefore depends on what
it spoke before; `tasks.synthesis.render` renders each block of utterances in a fresh
process for that reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tasks.synthesis.voices import Voice


# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes: IPA (UTF-8) instead of espeak's own names


@cache
def espeak_data_path() -> Path:
    """The espeak-ng-data folder shipped by espeakng-loader."""
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


class _EspeakVoiceInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The espeak-ng library, initialised once per process in synchronous mode."""

    def __init__(self) -> None:
        """Load and initialise the library; audio arrives through a callback."""
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_EspeakVoiceInfo)
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        data_path = espeak_data_path()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {rate}) with data {data_path}")
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._lib = lib
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._chunks: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)  # keep a reference: C holds a pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, n_samples: int, _events: Any) -> int:
        """Synthesis callback: copy a chunk of int16 samples; 0 means carry on."""
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0

    def _select(self, voice: Voice) -> None:
        """Select a voice and its prosody; fail rather than fall back to the default voice."""
        name = f"{voice.language}+{voice.variant}"
        status = self._lib.espeak_SetVoiceByName(name.encode())
        current = self._lib.espeak_GetCurrentVoice()
        identifier = (current.contents.identifier or b"").decode() if current else ""
        if status != 0 or not identifier.lower().endswith(f"/{name.lower()}"):
            raise ValueError(
                f"espeak cannot load voice {voice.voice_id!r} (asked for {name!r}, status "
                f"{status}, got {identifier!r}); pick one from list_voices()"
            )
        prosody = (
            (_PARAM_RATE, voice.rate),
            (_PARAM_PITCH, voice.pitch),
            (_PARAM_RANGE, voice.pitch_range),
        )
        for parameter, value in prosody:
            if self._lib.espeak_SetParameter(parameter, int(value), 0) != 0:
                raise ValueError(
                    f"espeak rejected parameter {parameter}={value} of voice {voice.voice_id!r}"
                )

    def synth(self, text: str, voice: Voice) -> np.ndarray:
        """Synthesise text as int16 samples at self.sample_rate."""
        self._select(voice)
        # breath and klatt-6 noise draw from espeak's and libc's generators: fix both per clip
        self._lib.espeak_ng_SetRandSeed(0)
        self._libc.srand(0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self._lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
        )
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {voice.voice_id}")
        self._lib.espeak_Synchronize()
        chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def ipa(self, text: str, language: str) -> str:
        """The IPA espeak reads `text` as in `language` ("en-us"), clauses joined by spaces."""
        if self._lib.espeak_SetVoiceByName(language.encode()) != 0:
            raise ValueError(f"espeak has no voice for language {language!r}")
        buffer = ctypes.c_char_p(text.encode("utf-8"))
        pointer = ctypes.pointer(buffer)
        clauses = []
        while buffer.value:  # the call moves the pointer past each clause it reads
            out = self._lib.espeak_TextToPhonemes(pointer, _CHARS_UTF8, _PHONEMES_IPA)
            clauses.append((out or b"").decode("utf-8").strip())
        return " ".join(c for c in clauses if c)


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def espeak_synth(text: str, voice: Voice) -> tuple[np.ndarray, int]:
    """Synthesise with this process's espeak engine (created on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:  # espeak is not thread-safe
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE.synth(text, voice), _ENGINE.sample_rate


def espeak_ipa(text: str, language: str = "en-us") -> str:
    """The IPA phonemes espeak-ng reads `text` as (this process's engine, created on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE.ipa(text, language)


def espeak_version() -> str:
    """The version string of the loaded espeak-ng library."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE.version
