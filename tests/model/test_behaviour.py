"""Behaviour of a trained model (Made-With-ML's behavioural tests): a tiny recogniser trained
until it spells two synthetic "utterances", then probed with changes that must not (gain) or
must (silence) change what it says; and loss goes down in a 2-step run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.audio import SAMPLE_RATE
from models.ctc import AcousticModelConfig, CTCAcousticModel, ctc_loss
from models.features import SpecAugment, ValTransform, collate
from models.recognizer import Recognizer
from models.training import get_lr

TINY = AcousticModelConfig(conv_channels=32, rnn_hidden=32, rnn_layers=2, dropout=0.0)
TEXTS = ["hi", "go on"]


def sweep(seconds: float, f0: float, f1: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (amplitude * np.sin(phase)).astype(np.float32)  # (S,)


def clips() -> list[np.ndarray]:
    return [sweep(0.8, 200, 2000), sweep(1.0, 3000, 500)]


def gain(clip: np.ndarray, db: float) -> np.ndarray:
    return (clip * 10 ** (db / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def trained() -> Recognizer:
    """A tiny model trained (seeded) until greedy decoding spells both training clips."""
    torch.manual_seed(0)
    model = CTCAcousticModel(TINY).train()
    waves = [torch.from_numpy(c) for c in clips()]
    # +/-3 dB copies in training, as car-noise and level augmentation would give
    levels = [torch.from_numpy(gain(c, db)) for db in (-3.0, 3.0) for c in clips()]
    batch = collate([*waves, *levels], TEXTS * 3, ["a", "b", "c", "d", "e", "f"], ValTransform())
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    recognizer = Recognizer(model)
    for step in range(600):
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)
        loss = ctc_loss(log_probs, out_lengths, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 24:
            recognizer = Recognizer(model.eval())
            if [t.text for t in recognizer.transcribe(clips())] == TEXTS:
                return recognizer
            model.train()
    pytest.fail(f"the tiny model did not learn the two clips in 600 steps (loss {loss.item()})")


def test_the_trained_model_says_what_it_learned(trained: Recognizer) -> None:
    assert [t.text for t in trained.transcribe(clips())] == TEXTS


@pytest.mark.parametrize("db", [-3.0, -1.5, 1.5, 3.0])
def test_same_transcript_under_a_small_gain_change(trained: Recognizer, db: float) -> None:
    louder_or_softer = [gain(c, db) for c in clips()]
    assert [t.text for t in trained.transcribe(louder_or_softer)] == TEXTS


@pytest.mark.parametrize("seconds", [0.0, 0.01, 0.5, 1.0])
def test_silence_gives_an_empty_transcript(trained: Recognizer, seconds: float) -> None:
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(0)
    silent = [np.zeros(n, np.float32), (1e-5 * rng.standard_normal(n)).astype(np.float32)]
    for result in trained.transcribe(silent):
        assert result.text == ""
        assert result.duration_s == pytest.approx(seconds)


def test_loss_goes_down_in_a_two_step_run() -> None:
    torch.manual_seed(1)
    model = CTCAcousticModel(TINY).train()
    transform = ValTransform()
    batch = collate([torch.from_numpy(c) for c in clips()], TEXTS, ["a", "b"], transform)
    augment = SpecAugment().eval()  # masking off: the same batch both steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=get_lr(0, 0.0, 5e-3, warmup_steps=1))
    losses = []
    for _ in range(3):  # two updates, and the loss after them
        log_probs, out_lengths = model(augment(batch.features), batch.feature_lengths)
        loss = ctc_loss(log_probs, out_lengths, batch)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(math.isfinite(x) for x in losses)
    assert losses[2] < losses[1] < losses[0]


def test_lr_schedule_warms_up_then_follows_the_clock() -> None:
    peak = 2e-3
    assert get_lr(0, 0.0, peak, warmup_steps=10) == pytest.approx(peak / 10)
    assert get_lr(9, 0.0, peak, warmup_steps=10) == pytest.approx(peak)
    assert get_lr(500, 0.5, peak, warmup_steps=10) == pytest.approx(peak * (0.05 + 0.95 * 0.5))
    assert get_lr(500, 1.0, peak, warmup_steps=10) == pytest.approx(peak * 0.05)
    assert get_lr(500, 7.0, peak, warmup_steps=10) == get_lr(500, 1.0, peak, warmup_steps=10)
