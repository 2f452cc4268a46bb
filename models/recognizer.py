"""The whole recogniser: features + acoustic model + decoder, and its on-disk format.

A saved recogniser is a directory with ``weights.pt`` (a state_dict, loaded with
``weights_only=True`` so loading never unpickles code) and ``config.json`` (model config,
decoder settings, the LM as plain counts, hot words and the vocabulary).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.ctc import AcousticModelConfig, CTCAcousticModel
from models.decoder import BeamDecoder, BeamSettings, GreedyDecoder, WordLM
from models.features import HOP_LENGTH, N_MELS, SAMPLE_RATE, ValTransform, pad_waveforms
from models.text import VOCAB

RECOGNIZER_FORMAT = "voicecycle-recognizer/1"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
# A clip whose peak is below this (about -80 dBFS) is treated as silence and not decoded.
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class Transcription:
    text: str
    confidence: float  # see models.decoder: mean letter posterior, or blank posterior if empty
    duration_s: float


def _receptive_field_samples(config: AcousticModelConfig) -> int:
    # Two stride-2 convolutions of kernel k see 1 + (k - 1) * (1 + 2) feature frames.
    frames = 1 + 3 * (config.conv_kernel - 1)
    return (frames - 1) * HOP_LENGTH


def quantize_int8(model: CTCAcousticModel) -> CTCAcousticModel:
    """A copy whose GRU and output layer run in int8 (dynamic quantisation: int8 weights,
    activations scaled per batch on the fly). About 3x faster on CPU; the convolutions and
    the feature front end stay float."""
    import warnings

    with warnings.catch_warnings():  # torch.ao's eager API is deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        quantized: CTCAcousticModel = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8, inplace=False
        )
    return quantized.eval()


class Recognizer:
    """Features + acoustic model + decoder. With `int8`, inference runs a dynamically
    quantised copy of the model (`quantize_int8`); the float weights are what is saved."""

    def __init__(
        self,
        model: CTCAcousticModel,
        decoder: GreedyDecoder | BeamDecoder | None = None,
        batch_size: int = 16,
        silence_peak: float = SILENCE_PEAK,
        int8: bool = False,
    ) -> None:
        self.float_model = model.eval()
        self.int8 = int8
        self.model = quantize_int8(self.float_model) if int8 else self.float_model
        self.transform = ValTransform(model.config.n_mels).eval()
        self.decoder = decoder if decoder is not None else GreedyDecoder()
        self.batch_size = batch_size
        self.silence_peak = silence_peak
        self.min_samples = _receptive_field_samples(model.config)

    # -- inference ---------------------------------------------------------------------------

    def _to_tensors(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        tensors = []
        for i, wav in enumerate(waveforms):
            array = np.asarray(wav)
            if array.ndim != 1:
                raise ValueError(
                    f"waveform {i}: expected mono 1-D float32 samples at {SAMPLE_RATE} Hz, "
                    f"got an array of shape {array.shape}"
                )
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"waveform {i}: expected float samples in [-1, 1], got dtype {array.dtype}"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"waveform {i}: expected finite samples, got NaN or inf")
            tensors.append(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
        return tensors

    @torch.inference_mode()
    def emissions(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """1-D waveforms -> log-probs (B, T', V) and their lengths (B,), as one batch.

        Clips shorter than the convolutions' receptive field are zero-padded up to it.
        """
        padded = [
            torch.nn.functional.pad(w, (0, max(0, self.min_samples - w.shape[0])))
            for w in waveforms
        ]
        audio, lengths = pad_waveforms(padded)  # (B, S), (B,)
        features, feature_lengths = self.transform(audio, lengths)  # (B, T, F), (B,)
        log_probs, out_lengths = self.model(features, feature_lengths)  # (B, T', V), (B,)
        return log_probs, out_lengths

    @torch.inference_mode()
    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[Transcription]:
        """Mono float32 16 kHz clips -> one Transcription each, in order."""
        tensors = self._to_tensors(waveforms)
        results: list[Transcription | None] = [None] * len(tensors)
        to_decode = []
        for i, wav in enumerate(tensors):
            if wav.numel() == 0 or float(wav.abs().max()) < self.silence_peak:
                results[i] = Transcription("", 1.0, wav.shape[0] / SAMPLE_RATE)
            else:
                to_decode.append(i)
        # Similar lengths together: less padding to run the GRU over.
        to_decode.sort(key=lambda i: tensors[i].shape[0])
        for start in range(0, len(to_decode), self.batch_size):
            chunk = to_decode[start : start + self.batch_size]
            log_probs, lengths = self.emissions([tensors[i] for i in chunk])  # (B, T', V), (B,)
            decoded = self.decoder.decode(log_probs, lengths)
            for i, (text, confidence) in zip(chunk, decoded, strict=True):
                results[i] = Transcription(text, confidence, tensors[i].shape[0] / SAMPLE_RATE)
        return [r for r in results if r is not None]

    # -- hot words ---------------------------------------------------------------------------

    @property
    def hot_words(self) -> tuple[str, ...]:
        return self.decoder.hot_words if isinstance(self.decoder, BeamDecoder) else ()

    def with_hot_words(
        self,
        words: Sequence[str],
        context: Sequence[str] = (),
        settings: dict[str, Any] | None = None,
    ) -> Recognizer:
        """A recogniser (sharing this one's model) whose beam decoder also knows ``words``
        (``context``: sentences holding them, for the LM; ``settings``: beam changes)."""
        if not isinstance(self.decoder, BeamDecoder):
            raise ValueError(
                "hot words need a beam decoder with a lexicon; this recogniser decodes greedily"
            )
        return Recognizer(
            self.float_model,
            self.decoder.with_hot_words(words, context, settings),
            self.batch_size,
            self.silence_peak,
            self.int8,
        )

    def with_int8(self, int8: bool = True) -> Recognizer:
        """This recogniser (same weights and decoder) with int8 inference on or off."""
        return Recognizer(self.float_model, self.decoder, self.batch_size, self.silence_peak, int8)

    # -- persistence -------------------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        decoder: dict[str, Any]
        lm: dict[str, Any] | None = None
        if isinstance(self.decoder, BeamDecoder):
            decoder = {"kind": "beam", "settings": self.decoder.settings.to_dict()}
            lm = self.decoder.lm.to_dict() if self.decoder.lm is not None else None
        else:
            decoder = {"kind": "greedy"}
        return {
            "format": RECOGNIZER_FORMAT,
            "vocab": list(VOCAB),
            "sample_rate": SAMPLE_RATE,
            "hop_length": HOP_LENGTH,
            "model": self.float_model.config.to_dict(),
            "decoder": decoder,
            "hot_words": list(self.hot_words),
            "lm": lm,
            "batch_size": self.batch_size,
            "int8": self.int8,
            "silence_peak": self.silence_peak,
        }

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.float_model.state_dict(), directory / WEIGHTS_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config_dict(), indent=1) + "\n")

    @property
    def lexicon(self) -> set[str]:
        """The in-domain lexicon: the words of the training transcripts plus hot words (what
        hot-word mining and the out-of-lexicon share compare against); empty if greedy."""
        if not isinstance(self.decoder, BeamDecoder):
            return set()
        lm_words = set(self.decoder.lm.domain_words) if self.decoder.lm is not None else set()
        return lm_words | set(self.decoder.hot_word_set)

    @property
    def vocabulary(self) -> set[str]:
        """Every word this recogniser can output: the lexicon plus the LM's general English
        background (the open vocabulary); empty if greedy."""
        if not isinstance(self.decoder, BeamDecoder):
            return set()
        lm_words = set(self.decoder.lm.words) if self.decoder.lm is not None else set()
        return lm_words | set(self.decoder.hot_word_set)

    @staticmethod
    def _read_config(directory: Path) -> dict[str, Any]:
        config: dict[str, Any] = json.loads((directory / CONFIG_FILE).read_text())
        if config.get("format") != RECOGNIZER_FORMAT:
            raise ValueError(
                f"{directory / CONFIG_FILE}: expected format {RECOGNIZER_FORMAT!r}, "
                f"got {config.get('format')!r}"
            )
        return config

    @classmethod
    def read_lexicon(cls, directory: Path) -> set[str]:
        """A saved recogniser's in-domain lexicon (its transcripts' words plus the words of
        its hot words, not the general background), read from its config without the weights."""
        config = cls._read_config(Path(directory))
        words = set(WordLM.from_dict(config["lm"]).domain_words) if config.get("lm") else set()
        words.update(w for phrase in config.get("hot_words", []) for w in phrase.split())
        return words

    @classmethod
    def load_model(cls, directory: Path) -> CTCAcousticModel:
        """Only the acoustic model of a saved recogniser (e.g. to warm-start training from),
        checked against the code's vocabulary and front end like ``load``."""
        directory = Path(directory)
        return cls._load_model(directory, cls._read_config(directory))

    @staticmethod
    def _load_model(directory: Path, config: dict[str, Any]) -> CTCAcousticModel:
        vocab = tuple(config.get("vocab", ()))
        if vocab != VOCAB:
            differ = [
                f"{i}: saved {a!r} vs code {b!r}"
                for i, (a, b) in enumerate(zip(vocab, VOCAB, strict=False))
                if a != b
            ]
            raise ValueError(
                f"{directory}: saved vocabulary ({len(vocab)} symbols) does not match "
                f"models.text.VOCAB ({len(VOCAB)} symbols); the output layer would be "
                f"misread. Differences: {differ[:5] or 'length only'}"
            )
        for key, expected in (("sample_rate", SAMPLE_RATE), ("hop_length", HOP_LENGTH)):
            if config.get(key) != expected:
                raise ValueError(f"{directory}: saved {key} {config.get(key)} != {expected}")
        model_config = AcousticModelConfig.from_dict(config["model"])
        if model_config.n_mels != N_MELS:
            raise ValueError(f"{directory}: saved n_mels {model_config.n_mels} != {N_MELS}")
        model = CTCAcousticModel(model_config)
        state = torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model

    @classmethod
    def load(cls, directory: Path) -> Recognizer:
        directory = Path(directory)
        config = cls._read_config(directory)
        model = cls._load_model(directory, config)
        lm = WordLM.from_dict(config["lm"]) if config.get("lm") is not None else None
        decoder: GreedyDecoder | BeamDecoder
        kind = config["decoder"]["kind"]
        if kind == "beam":
            settings = BeamSettings.from_dict(config["decoder"]["settings"])
            decoder = BeamDecoder(lm, config.get("hot_words", []), settings)
        elif kind == "greedy":
            decoder = GreedyDecoder()
        else:
            raise ValueError(f"{directory}: expected decoder kind 'beam' or 'greedy', got {kind!r}")
        return cls(
            model,
            decoder,
            batch_size=int(config.get("batch_size", 16)),
            silence_peak=float(config.get("silence_peak", SILENCE_PEAK)),
            int8=bool(config.get("int8", False)),
        )
