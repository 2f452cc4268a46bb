"""Log-mel features, SpecAugment, the train/val transforms and the padded batch.

The train path (``TrainTransform``) is LogMel followed by SpecAugment; the evaluation and
serving path (``ValTransform``) is LogMel only, as in torchaudio's recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from models.audio import SAMPLE_RATE
from models.text import encode

__all__ = ["SAMPLE_RATE"]  # re-exported: named once in the torch-free models.audio

N_MELS = 80
WIN_LENGTH = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
LOG_FLOOR = 1e-6
# Per-bin standard deviations below this are not blown up to 1: a near-silent clip stays
# near zero instead of turning its noise floor into speech-like features.
MIN_STD = 1.0


def frames_for(num_samples: int) -> int:
    """Number of feature frames LogMel gives for a clip of ``num_samples`` samples."""
    if num_samples < 0:
        raise ValueError(f"expected a non-negative number of samples, got {num_samples}")
    return num_samples // HOP_LENGTH + 1  # centred frames


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on valid positions."""
    steps = torch.arange(max_len, device=lengths.device)  # (T,)
    return steps[None, :] < lengths[:, None]  # (B, T)


class LogMel(nn.Module):
    """Waveform (B, S) -> per-utterance normalised log-mel (B, T, N_MELS).

    Frames are centred with zero padding, so a clip padded with zeros inside a batch gets the
    same valid frames as the clip alone; the mean/variance normalisation uses only the valid
    frames, and padded frames are set to 0.
    """

    def __init__(self, n_mels: int = N_MELS, min_std: float = MIN_STD) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.min_std = min_std
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=N_FFT,
            win_length=WIN_LENGTH,
            hop_length=HOP_LENGTH,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",
            power=2.0,
        )

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms of shape (B, S), got {tuple(waveforms.shape)}")
        batch, num_samples = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), num_samples, dtype=torch.long)
        mel = self.mel(waveforms.float())  # (B, n_mels, T)
        feats = torch.log(mel + LOG_FLOOR).transpose(1, 2)  # (B, T, n_mels)
        frame_lengths = lengths // HOP_LENGTH + 1  # (B,)
        mask = lengths_mask(frame_lengths.to(feats.device), feats.shape[1])[..., None]  # (B, T, 1)
        count = mask.sum(dim=1, keepdim=True).clamp_min(1)  # (B, 1, 1)
        mean = (feats * mask).sum(dim=1, keepdim=True) / count  # (B, 1, n_mels)
        var = (((feats - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count  # (B, 1, n_mels)
        std = var.sqrt().clamp_min(self.min_std)  # (B, 1, n_mels)
        return (feats - mean) / std * mask  # (B, T, n_mels)


class SpecAugment(nn.Module):
    """Frequency and time masking with independent masks per utterance; identity in eval."""

    def __init__(
        self,
        freq_mask_param: int = 15,
        time_mask_param: int = 20,
        n_freq_masks: int = 2,
        n_time_masks: int = 2,
        max_time_fraction: float = 0.2,
    ) -> None:
        super().__init__()
        self.freq_masks = nn.ModuleList(
            torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True)
            for _ in range(n_freq_masks)
        )
        self.time_masks = nn.ModuleList(
            torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True, p=max_time_fraction)
            for _ in range(n_time_masks)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        spec = features.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T): iid masks want 4-D
        for mask in [*self.freq_masks, *self.time_masks]:
            spec = mask(spec, mask_value=0.0)  # 0 is the normalised mean
        return spec.squeeze(1).transpose(1, 2)  # (B, T, F)


# A transform turns padded waveforms (B, S) and their lengths (B,) into features (B, T, F)
# and feature lengths (B,).
Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ValTransform(nn.Module):
    """Evaluation and serving features: LogMel only."""

    def __init__(self, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.log_mel = LogMel(n_mels)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.log_mel(waveforms, lengths)  # (B, T, F)
        return features, lengths // HOP_LENGTH + 1


class TrainTransform(nn.Module):
    """Training features: LogMel, then SpecAugment (masking only while ``self.training``)."""

    def __init__(self, n_mels: int = N_MELS, spec_augment: SpecAugment | None = None) -> None:
        super().__init__()
        self.log_mel = LogMel(n_mels)
        self.spec_augment = spec_augment if spec_augment is not None else SpecAugment()

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.spec_augment(self.log_mel(waveforms, lengths))  # (B, T, F)
        return features, lengths // HOP_LENGTH + 1


@dataclass(frozen=True)
class Batch:
    features: torch.Tensor  # (B, T, F) float
    feature_lengths: torch.Tensor  # (B,) long
    targets: torch.Tensor  # (B, L) long, padded with 0 (blank)
    target_lengths: torch.Tensor  # (B,) long
    utterance_ids: tuple[str, ...]


def pad_waveforms(waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """List of 1-D waveforms -> zero-padded (B, S) and lengths (B,)."""
    for i, wav in enumerate(waveforms):
        if wav.ndim != 1:
            raise ValueError(f"waveform {i}: expected mono 1-D samples, got {tuple(wav.shape)}")
    lengths = torch.tensor([wav.shape[0] for wav in waveforms], dtype=torch.long)  # (B,)
    padded = torch.zeros(len(waveforms), int(lengths.max().item()) if len(waveforms) else 0)
    for i, wav in enumerate(waveforms):
        padded[i, : wav.shape[0]] = wav.float()
    return padded, lengths  # (B, S), (B,)


def pad_targets(transcripts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoded transcripts -> targets (B, L) padded with 0 (blank) and their lengths (B,)."""
    encoded = [encode(text) for text in transcripts]
    target_lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)  # (B,)
    targets = torch.zeros(len(encoded), max(1, int(target_lengths.max())), dtype=torch.long)
    for i, e in enumerate(encoded):
        targets[i, : len(e)] = torch.tensor(e, dtype=torch.long)
    return targets, target_lengths  # (B, L), (B,)


def _check_sizes(
    utterances: Sequence[object], transcripts: Sequence[str], ids: Sequence[str]
) -> None:
    if not len(utterances) == len(transcripts) == len(ids):
        raise ValueError(
            f"expected as many transcripts and ids as utterances, got {len(utterances)} "
            f"utterances, {len(transcripts)} transcripts, {len(ids)} ids"
        )
    if not utterances:
        raise ValueError("expected at least one utterance, got an empty list")


def collate(
    waveforms: Sequence[torch.Tensor],
    transcripts: Sequence[str],
    ids: Sequence[str],
    transform: Transform,
) -> Batch:
    """Pad 16 kHz mono waveforms and encoded transcripts into a Batch."""
    _check_sizes(waveforms, transcripts, ids)
    padded, lengths = pad_waveforms(waveforms)  # (B, S), (B,)
    features, feature_lengths = transform(padded, lengths)  # (B, T, F), (B,)
    targets, target_lengths = pad_targets(transcripts)  # (B, L), (B,)
    return Batch(features, feature_lengths, targets, target_lengths, tuple(ids))


def collate_features(
    features: Sequence[torch.Tensor],
    transcripts: Sequence[str],
    ids: Sequence[str],
    augment: nn.Module | None = None,
) -> Batch:
    """Pad precomputed (T, F) features (e.g. from a feature cache) and encoded transcripts
    into a Batch; ``augment`` (SpecAugment, train only) runs on the padded features."""
    _check_sizes(features, transcripts, ids)
    feats = [f.float() for f in features]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)  # (B,)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (B, T, F)
    if augment is not None:
        padded = augment(padded)  # (B, T, F)
    targets, target_lengths = pad_targets(transcripts)  # (B, L), (B,)
    return Batch(padded, lengths, targets, target_lengths, tuple(ids))
