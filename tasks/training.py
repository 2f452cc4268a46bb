"""Training the CTC recogniser: a time-budgeted loop with progress, checkpoints, resume and
early stopping on dev WER, and the serving recogniser assembled from its best checkpoint.

The loop fits on a screen; the schedule (`get_lr`), batching and checkpoints are plain-torch
helpers in models.training, the cached features in tasks.feature_cache.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from prefect import task
from tqdm import tqdm

from data_contracts.scoping import TrainingBudget
from models.cores import available_cores
from models.ctc import AcousticModelConfig, CTCAcousticModel, ctc_loss
from models.decoder import BeamDecoder, BeamSettings, GreedyDecoder, WordLM
from models.distributed import (
    Ranks,
    agreed_max,
    agreed_sum,
    autocast,
    batch_to,
    cpu_state,
    main_value,
    my_batches,
    weights_digest,
    wrap,
)
from models.features import SpecAugment
from models.recognizer import Recognizer
from models.training import (
    WARM_START_WARMUP_STEPS,
    WARMUP_STEPS,
    LoopState,
    get_lr,
    length_buckets,
    load_checkpoint,
    save_checkpoint,
)
from tasks.corpus import GENERAL_INTENT
from tasks.evaluation.metrics import wer
from tasks.feature_cache import FeatureCache, load_feature_cache
from tasks.lexicon import general_lexicon

CPU = torch.device("cpu")
# Model sizes per training profile; "smoke" is for tests and CI (seconds, not minutes).
# "quality" is one BiGRU layer deeper (~1.4x the time a step) and is trained longer (the train
# benchmark gives it 60 minutes, bench/train.QUALITY_MINUTES): on 2 CPU cores the default's dev
# WER is still falling when its 9 minutes end, so more steps pay first; the earlier 320x4 model
# managed a third of the default's utterances a second and ended worse on every slice (WER
# 0.061 / 0.077 against 0.019 / 0.030, bench/results/train.json of 2026-11-23).
PROFILE_MODELS: dict[str, AcousticModelConfig] = {
    "smoke": AcousticModelConfig(conv_channels=64, rnn_hidden=64, rnn_layers=1),
    "default": AcousticModelConfig(),
    "quality": AcousticModelConfig(rnn_layers=3),
}


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
    weights_sha256: str = ""  # of the final weights (every DDP rank's must be equal)


@torch.inference_mode()
def evaluate(
    model: CTCAcousticModel,
    cache: FeatureCache,
    rows: Sequence[int],
    device: torch.device = CPU,
) -> float:
    """Greedy-decoded WER of the model on some cached rows (for early stopping)."""
    model.eval()
    decoder = GreedyDecoder()
    refs, hyps = [], []
    for start in range(0, len(rows), 32):
        chunk = list(rows[start : start + 32])
        batch = batch_to(cache.batch(chunk), device)
        log_probs, out_lengths = model(batch.features, batch.feature_lengths)
        hyps += [t for t, _ in decoder.decode(log_probs.float().cpu(), out_lengths.cpu())]
        refs += [cache.transcripts[i] for i in chunk]
    model.train()
    return wer(refs, hyps)


def cache_rows(cache: FeatureCache, ids: Sequence[str]) -> list[int]:
    """Row numbers of utterance ids in the cache; fails naming the ids it lacks."""
    index = cache.index()
    missing = [u for u in ids if u not in index]
    if missing:
        raise ValueError(f"{len(missing)} ids are not in the feature cache, e.g. {missing[:3]}")
    return [index[u] for u in ids]


def initial_model(
    profile: str, learning_rate: float, init_from: Path | None
) -> tuple[CTCAcousticModel, float, int]:
    """The model to train, its peak LR and warmup: the profile's size from scratch, or a
    saved recogniser's architecture and weights (a warm start, at half the LR)."""
    if init_from is None:
        return CTCAcousticModel(PROFILE_MODELS[profile]), learning_rate, WARMUP_STEPS
    return Recognizer.load_model(init_from), learning_rate / 2, WARM_START_WARMUP_STEPS


def record(
    state: LoopState, dev_wer: float, losses: list[float], lr: float, elapsed: float
) -> None:
    """Append one evaluation to the history; count it as better or not."""
    state.history.append(
        {
            "step": state.step,
            "epoch": state.epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "dev_wer_greedy": dev_wer,
            "lr": lr,
            "elapsed_s": elapsed,
        }
    )
    if dev_wer < state.best_dev_wer - 1e-4:
        state.best_dev_wer, state.bad_evals = dev_wer, 0
    else:
        state.bad_evals += 1


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
    ranks = Ranks.single(budget.device)
    return train_loop(cache_path, train_ids, dev_ids, run_dir, budget, progress, resume,
                      init_from, ranks)  # fmt: skip


def dev_evaluation(
    model: CTCAcousticModel,
    cache: FeatureCache,
    dev_rows: Sequence[int],
    losses: list[float],
    ranks: Ranks,
) -> tuple[float, list[float]]:
    """Rank 0's dev WER and the ranks' mean training loss since the last evaluation, the
    same on every rank."""
    dev_wer = evaluate(model, cache, dev_rows, ranks.device) if ranks.main else 0.0
    if ranks.world == 1:
        return dev_wer, losses
    mean_loss = agreed_sum(float(np.mean(losses)) / ranks.world if losses else 0.0, ranks)
    return main_value(dev_wer, ranks), [mean_loss] if losses else []


def train_loop(
    cache_path: Path,
    train_ids: Sequence[str],
    dev_ids: Sequence[str],
    run_dir: Path,
    budget: TrainingBudget,
    progress: bool,
    resume: bool,
    init_from: Path | None,
    ranks: Ranks,
) -> TrainResult:
    """The loop of `train_acoustic_model`, on one process or as one rank of a DDP job (every
    rank its share of the batches; rank 0 evaluates and writes the checkpoints)."""
    torch.manual_seed(budget.seed)
    if budget.threads or ranks.world > 1:
        torch.set_num_threads(max(1, (budget.threads or available_cores()) // ranks.world))
    rng = np.random.default_rng(budget.seed)
    cache = load_feature_cache(cache_path)
    train_rows, dev_rows = cache_rows(cache, train_ids), cache_rows(cache, dev_ids)
    model, peak_lr, warmup = initial_model(budget.profile, budget.learning_rate, init_from)
    model.to(ranks.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=1e-2)
    augment = SpecAugment().train()
    run_dir.mkdir(parents=True, exist_ok=True)
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    state = LoopState()
    if resume and last.is_file():
        state = load_checkpoint(last, model, optimizer)
        rng = np.random.default_rng(budget.seed + state.epoch)
        print(f"resuming from {last}: epoch {state.epoch}, step {state.step}")
    net = wrap(model, ranks)  # DDP starts every rank from rank 0's weights
    if ranks.world > 1:  # SpecAugment draws its own masks on each rank
        torch.manual_seed(budget.seed + 7919 * ranks.rank)
    if init_from is not None and not state.history:
        # the starting point is a candidate too: a warm start never ends worse on dev
        record(state, dev_evaluation(model, cache, dev_rows, [], ranks)[0], [], 0.0, 0.0)
        if ranks.main:
            torch.save(cpu_state(model), best)
    budget_s, spent = budget.max_minutes * 60.0, state.spent_s
    model.train()
    seen, losses, stop = 0, [], ""
    started = time.monotonic() - spent
    bar = tqdm(desc="train", unit="step", disable=not (progress and ranks.main))
    lengths = [cache.features[i].shape[0] for i in train_rows]
    while not stop and state.epoch < budget.max_epochs:
        for batch_rows in my_batches(length_buckets(lengths, budget.batch_size, rng), ranks):
            elapsed = agreed_max(time.monotonic() - started, ranks)  # one clock for all ranks
            lr = get_lr(state.step, elapsed / budget_s, peak_lr, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batch_to(
                cache.batch([train_rows[i] for i in batch_rows], augment), ranks.device
            )
            with autocast(ranks.device, budget.mixed_precision):
                log_probs, out_lengths = net(batch.features, batch.feature_lengths)
            loss = ctc_loss(log_probs.float(), out_lengths, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            state.step, seen = state.step + 1, seen + len(batch_rows)
            losses.append(loss.item())
            bar.update(1)
            if state.step % budget.eval_every_steps == 0 or elapsed >= budget_s:
                record(state, *dev_evaluation(model, cache, dev_rows, losses, ranks), lr, elapsed)
                losses = []
                last_eval = state.history[-1]
                bar.set_postfix(
                    loss=f"{last_eval['train_loss']:.3f}",
                    dev_wer=f"{last_eval['dev_wer_greedy']:.3f}",
                )
                state.spent_s = elapsed
                if ranks.main:
                    if state.bad_evals == 0:
                        torch.save(cpu_state(model), best)
                    save_checkpoint(last, model, optimizer, state)
                stop = stop_reason(state, budget, elapsed >= budget_s)
                if stop:
                    break
        else:
            state.epoch += 1
    bar.close()
    if not stop:
        stop = f"reached max_epochs={budget.max_epochs}"
    if ranks.main and not best.is_file():  # budget too small for one evaluation: keep it all
        torch.save(cpu_state(model), best)
    seconds = agreed_max(time.monotonic() - started, ranks)
    seen = int(agreed_sum(seen, ranks))  # utterances every rank trained on
    return TrainResult(
        checkpoint=best,
        config=model.config,
        history=state.history,
        best_dev_wer=state.best_dev_wer,
        steps=state.step,
        seconds=seconds,
        stopped_because=stop,
        utterances_per_second=seen / max(seconds - spent, 1e-9),
        weights_sha256=weights_digest(model),
    )


def stop_reason(state: LoopState, budget: TrainingBudget, out_of_time: bool) -> str:
    """Why training stops after this evaluation ("" to go on): early stop or the time budget."""
    if state.bad_evals >= budget.early_stop_patience:
        return f"early stop: dev WER did not improve in {state.bad_evals} evaluations"
    if out_of_time:
        return f"time budget of {budget.max_minutes:g} min reached"
    return ""


def build_recognizer(
    checkpoint: Path,
    config: AcousticModelConfig,
    lm_texts: Sequence[str],
    hot_words: Sequence[str],
    beam_size: int,
    *,
    lm_order: int,
    beam_threshold: float,
    int8: bool = False,
    background: dict[str, float] | None = None,
    background_weight: float = 0.0,
    beam_size_token: int = 8,
) -> Recognizer:
    """The serving recogniser: trained weights + lexicon beam search with a word n-gram LM
    of `lm_order` (`background`: general English word frequencies, the open vocabulary)."""
    model = CTCAcousticModel(config)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    lm = WordLM.from_transcripts(
        (t for t in lm_texts if t),
        background=background,
        background_weight=background_weight,
        order=lm_order,
    )
    settings = BeamSettings(
        beam_size=beam_size, beam_size_token=beam_size_token, beam_threshold=beam_threshold
    )
    decoder = BeamDecoder(lm, hot_words=hot_words, settings=settings)
    return Recognizer(model.eval(), decoder, int8=int8)


def training_sets(manifest: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
    """Train ids, dev ids (clean and in-car) and the texts the word LM is built from (the
    clean training queries; general-English training utterances are words in no order)."""
    train = manifest[manifest["split"] == "train"]
    dev = manifest[manifest["split"] == "dev"]
    queries = (train["condition"] == "clean") & (train["intent"] != GENERAL_INTENT)
    lm_texts = list(train.loc[queries, "transcript"])
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
        background=general_lexicon(budget.general_lexicon_words),
        background_weight=budget.general_lexicon_weight,
        beam_size_token=budget.beam_size_token,
        lm_order=budget.lm_order,
        beam_threshold=budget.beam_threshold,
    )
    recognizer.save(out_dir)
    return out_dir
