"""Training the CTC recogniser: cached features, a time-budgeted loop with progress,
checkpoints, resume and early stopping on dev WER, and transcription of whole manifests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from prefect import task
from tqdm import tqdm

from data_contracts.scoping import TrainingBudget
from models.ctc import AcousticModelConfig, CTCAcousticModel, ctc_loss
from models.decoder import BeamDecoder, BeamSettings, GreedyDecoder, WordLM
from models.features import (
    HOP_LENGTH,
    N_MELS,
    SAMPLE_RATE,
    Batch,
    SpecAugment,
    ValTransform,
    pad_waveforms,
)
from models.recognizer import Recognizer
from models.text import encode
from tasks.evaluation import wer

FEATURE_FORMAT = f"logmel{N_MELS}-hop{HOP_LENGTH}-sr{SAMPLE_RATE}/1"

# Model sizes per training profile; "smoke" is for tests and CI (seconds, not minutes).
PROFILE_MODELS: dict[str, AcousticModelConfig] = {
    "smoke": AcousticModelConfig(conv_channels=64, rnn_hidden=64, rnn_layers=1),
    "default": AcousticModelConfig(),
    "quality": AcousticModelConfig(conv_channels=320, rnn_hidden=320, rnn_layers=4),
}


@dataclass
class FeatureCache:
    ids: list[str]
    features: list[torch.Tensor]  # each (T, F) float16
    transcripts: list[str]

    def index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.ids)}


@dataclass
class TrainResult:
    checkpoint: Path
    config: AcousticModelConfig
    history: list[dict[str, float]] = field(default_factory=list)
    best_dev_wer: float = math.inf
    steps: int = 0
    seconds: float = 0.0
    stopped_because: str = ""
    utterances_per_second: float = 0.0


def read_clip(path: Path) -> np.ndarray:
    """A 16 kHz mono clip as float32 (stored datasets are always 16 kHz mono)."""
    audio, sr = sf.read(path, dtype="float32")
    if sr != SAMPLE_RATE or audio.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {sr} Hz and shape {audio.shape}")
    return audio


@task(name="cache-features")
def cache_features(
    manifest: pd.DataFrame, data_dir: Path, cache_dir: Path, key: str, progress: bool = True
) -> Path:
    """Log-mel features of every clip, computed once per augmented version and reused."""
    path = cache_dir / f"{key}.pt"
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    transform = ValTransform().eval()
    ids = list(manifest["utterance_id"])
    paths = [data_dir / p for p in manifest["audio_path"]]
    feats: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(ids), 32),
            desc="train: caching features",
            unit="batch",
            disable=not progress,
        ):
            waves = [torch.from_numpy(read_clip(p)) for p in paths[start : start + 32]]
            audio, lengths = pad_waveforms(waves)  # (B, S), (B,)
            features, frame_lengths = transform(audio, lengths)  # (B, T, F), (B,)
            feats += [
                f[:n].to(torch.float16).clone()
                for f, n in zip(features, frame_lengths, strict=True)
            ]
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": FEATURE_FORMAT,
            "ids": ids,
            "features": feats,
            "transcripts": list(manifest["transcript"]),
        },
        tmp,
    )
    tmp.rename(path)
    return path


def load_feature_cache(path: Path) -> FeatureCache:
    """Read a feature cache (tensors and strings only: weights_only loading)."""
    data = torch.load(path, weights_only=True)
    if data.get("format") != FEATURE_FORMAT:
        raise ValueError(
            f"{path}: expected features {FEATURE_FORMAT!r}, got {data.get('format')!r}"
        )
    return FeatureCache(list(data["ids"]), list(data["features"]), list(data["transcripts"]))


def make_batch(cache: FeatureCache, rows: Sequence[int], augment: SpecAugment | None) -> Batch:
    """Pad cached features and encoded transcripts into a Batch (SpecAugment on train only)."""
    feats = [cache.features[i].float() for i in rows]
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)  # (B,)
    padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (B, T, F)
    if augment is not None:
        padded = augment(padded)
    encoded = [encode(cache.transcripts[i]) for i in rows]
    target_lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)  # (B,)
    targets = torch.zeros(len(rows), max(1, int(target_lengths.max())), dtype=torch.long)
    for j, e in enumerate(encoded):
        targets[j, : len(e)] = torch.tensor(e, dtype=torch.long)
    return Batch(padded, lengths, targets, target_lengths, tuple(cache.ids[i] for i in rows))


def length_buckets(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, max_frames: int = 6000
) -> list[list[int]]:
    """Batches of similar length (less padding), capped in total frames, in random order."""
    order = np.argsort(np.asarray(lengths) + rng.uniform(0, 30, len(lengths)))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest = max(longest, lengths[i])
        if current and (len(current) >= batch_size or longest * (len(current) + 1) > max_frames):
            batches.append(current)
            current, longest = [], lengths[i]
        current.append(int(i))
    if current:
        batches.append(current)
    return [batches[k] for k in rng.permutation(len(batches))]


@torch.inference_mode()
def greedy_wer(model: CTCAcousticModel, cache: FeatureCache, rows: Sequence[int]) -> float:
    """Greedy-decoded WER of the model on some cached rows (for early stopping)."""
    model.eval()
    decoder = GreedyDecoder()
    refs, hyps = [], []
    for start in range(0, len(rows), 32):
        chunk = list(rows[start : start + 32])
        batch = make_batch(cache, chunk, None)
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)
        hyps += [t for t, _ in decoder.decode(log_probs, out_lengths)]
        refs += [cache.transcripts[i] for i in chunk]
    model.train()
    return wer(refs, hyps)


@task(name="train-acoustic-model")
def train_acoustic_model(
    cache_path: Path,
    train_ids: Sequence[str],
    dev_ids: Sequence[str],
    run_dir: Path,
    budget: TrainingBudget,
    progress: bool = True,
    resume: bool = True,
    init_from: Path | None = None,
) -> TrainResult:
    """Train within the scope's time budget; keep the best dev-WER checkpoint; resume if asked.

    `init_from` (a saved recogniser, e.g. the champion) warm-starts from its weights and
    architecture: a retrain then refines a working model instead of starting from noise.
    """
    torch.manual_seed(budget.seed)
    if budget.threads:
        torch.set_num_threads(budget.threads)
    rng = np.random.default_rng(budget.seed)
    cache = load_feature_cache(cache_path)
    index = cache.index()
    missing = [u for u in list(train_ids) + list(dev_ids) if u not in index]
    if missing:
        raise ValueError(f"{len(missing)} ids are not in the feature cache, e.g. {missing[:3]}")
    train_rows = [index[u] for u in train_ids]
    dev_rows = [index[u] for u in dev_ids]
    config = PROFILE_MODELS[budget.profile]
    peak_lr, warmup = budget.learning_rate, 150
    if init_from is not None:
        saved = json.loads((init_from / "config.json").read_text())
        config = AcousticModelConfig.from_dict(saved["model"])
    model = CTCAcousticModel(config)
    if init_from is not None:
        model.load_state_dict(torch.load(init_from / "weights.pt", weights_only=True))
        peak_lr, warmup = budget.learning_rate / 2, 30
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=1e-2)
    augment = SpecAugment().train()
    run_dir.mkdir(parents=True, exist_ok=True)
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    result = TrainResult(best, config)
    step, epoch, bad_evals, spent = 0, 0, 0, 0.0
    if resume and last.is_file():
        state = torch.load(last, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, bad_evals, spent = (
            int(state["step"]),
            int(state["epoch"]),
            int(state["bad_evals"]),
            float(state["spent"]),
        )
        result.best_dev_wer = float(state["best_dev_wer"])
        result.history = json.loads(str(state["history"]))
        rng = np.random.default_rng(budget.seed + epoch)
    budget_s = budget.max_minutes * 60.0
    if init_from is not None and not result.history:
        # the starting point is a candidate too: a warm start never ends worse on dev
        result.best_dev_wer = greedy_wer(model, cache, dev_rows)
        torch.save(model.state_dict(), best)
        result.history.append(
            {
                "step": 0,
                "epoch": 0,
                "train_loss": float("nan"),
                "dev_wer_greedy": result.best_dev_wer,
                "lr": 0.0,
                "elapsed_s": 0.0,
            }
        )
    model.train()
    seen = 0
    started = time.monotonic() - spent
    bar = tqdm(desc="train", unit="step", disable=not progress)
    losses: list[float] = []
    stop = ""
    while not stop:
        if epoch >= budget.max_epochs:
            stop = f"reached max_epochs={budget.max_epochs}"
            break
        lengths = [cache.features[i].shape[0] for i in train_rows]
        for batch_rows in length_buckets(lengths, budget.batch_size, rng):
            rows = [train_rows[i] for i in batch_rows]
            elapsed = time.monotonic() - started
            frac = min(1.0, elapsed / budget_s)
            lr = (
                peak_lr
                * min(1.0, (step + 1) / warmup)
                * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = make_batch(cache, rows, augment)
            log_probs, out_lengths = model(batch.features, batch.feature_lengths)
            loss = ctc_loss(log_probs, out_lengths, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            step += 1
            seen += len(rows)
            losses.append(loss.item())
            bar.update(1)
            if step % budget.eval_every_steps == 0 or elapsed >= budget_s:
                dev_wer = greedy_wer(model, cache, dev_rows)
                record = {
                    "step": step,
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                    "dev_wer_greedy": dev_wer,
                    "lr": lr,
                    "elapsed_s": elapsed,
                }
                result.history.append(record)
                losses = []
                bar.set_postfix(loss=f"{record['train_loss']:.3f}", dev_wer=f"{dev_wer:.3f}")
                if dev_wer < result.best_dev_wer - 1e-4:
                    result.best_dev_wer, bad_evals = dev_wer, 0
                    torch.save(model.state_dict(), best)
                else:
                    bad_evals += 1
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "step": step,
                        "epoch": epoch,
                        "bad_evals": bad_evals,
                        "spent": elapsed,
                        "best_dev_wer": result.best_dev_wer,
                        "history": json.dumps(result.history),
                    },
                    last,
                )
                if bad_evals >= budget.early_stop_patience:
                    stop = f"early stop: dev WER did not improve in {bad_evals} evaluations"
                elif elapsed >= budget_s:
                    stop = f"time budget of {budget.max_minutes:g} min reached"
                if stop:
                    break
        epoch += 1
    bar.close()
    result.steps, result.seconds = step, time.monotonic() - started
    result.stopped_because = stop
    result.utterances_per_second = seen / max(result.seconds - spent, 1e-9)
    if not best.is_file():  # budget too small for one evaluation: keep what we have
        torch.save(model.state_dict(), best)
    return result


def build_recognizer(
    checkpoint: Path,
    config: AcousticModelConfig,
    lm_texts: Sequence[str],
    hot_words: Sequence[str],
    beam_size: int,
    int8: bool = False,
) -> Recognizer:
    """The serving recogniser: trained weights + lexicon beam search with a word bigram LM."""
    model = CTCAcousticModel(config)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    lm = WordLM.from_transcripts(t for t in lm_texts if t)
    decoder = BeamDecoder(lm, hot_words=hot_words, settings=BeamSettings(beam_size=beam_size))
    return Recognizer(model.eval(), decoder, int8=int8)


def transcribe_manifest(
    recognizer: Recognizer,
    manifest: pd.DataFrame,
    data_dir: Path,
    progress: bool = True,
    desc: str = "evaluate",
) -> pd.DataFrame:
    """Transcribe every clip of a manifest; returns the manifest with hypothesis + confidence."""
    hyps: list[str] = []
    confs: list[float] = []
    paths = [data_dir / p for p in manifest["audio_path"]]
    for start in tqdm(range(0, len(paths), 32), desc=desc, unit="batch", disable=not progress):
        out = recognizer.transcribe([read_clip(p) for p in paths[start : start + 32]])
        hyps += [t.text for t in out]
        confs += [t.confidence for t in out]
    return manifest.assign(hypothesis=hyps, confidence=confs)


def prediction_frame(transcribed: pd.DataFrame) -> pd.DataFrame:
    """The columns tasks.evaluation expects, from a transcribed augmented manifest."""
    df = transcribed
    return pd.DataFrame(
        {
            "utterance_id": df["utterance_id"],
            "split": df["split"],
            "reference": df["transcript"],
            "hypothesis": df["hypothesis"],
            "confidence": df["confidence"].astype(float),
            "condition": df["condition"],
            "snr_db": pd.to_numeric(df["snr_db"], errors="coerce"),
            "noise_type": df["noise_type"],
            "voice": df["voice"],
            "synthesizer": df["synthesizer"],
            "duration_s": df["duration_s"].astype(float),
            "intent": df["intent"],
            "era": df["era"],
            "has_entity": df["entities"].astype(str).str.len() > 0,
        }
    )


def training_sets(manifest: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Train ids, dev ids (clean and in-car) and the texts the word LM is built from (train)."""
    train = manifest[manifest["split"] == "train"]
    dev = manifest[manifest["split"] == "dev"]
    lm_texts = list(train.loc[train["condition"] == "clean", "transcript"])
    return list(train["utterance_id"]), list(dev["utterance_id"]), lm_texts


def read_hot_words(budget: TrainingBudget) -> list[str]:
    """The curated hot-word list of the scope (inline list plus the optional file)."""
    words = list(budget.hot_words)
    if budget.hot_words_file is not None:
        words += [
            w.strip().lower()
            for w in budget.hot_words_file.read_text().splitlines()
            if w.strip() and not w.startswith("#")
        ]
    return words


@task(name="save-recognizer")
def save_recognizer(
    result: TrainResult, lm_texts: Sequence[str], budget: TrainingBudget, out_dir: Path
) -> Path:
    """Assemble the serving recogniser (weights + LM + hot words) and save it as files."""
    recognizer = build_recognizer(
        result.checkpoint,
        result.config,
        lm_texts,
        read_hot_words(budget),
        budget.beam_size,
        int8=budget.int8_inference,
    )
    recognizer.save(out_dir)
    return out_dir


def slice_headlines(slices: pd.DataFrame) -> dict[str, float]:
    """wer_clean, wer_car, cer_clean, cer_car (test) from a slice table, for MLflow."""
    out = {}
    for cond in ("clean", "car"):
        row = slices[(slices["slice"] == "condition") & (slices["value"] == cond)]
        if len(row):
            out[f"wer_{cond}"] = float(row["wer"].iloc[0])
            out[f"cer_{cond}"] = float(row["cer"].iloc[0])
    return out
