"""Decoding benchmark: the decoder's figures on a workspace's champion, without training.

The acoustic model runs once per clip, exactly as the evaluation and the service run it
(`Recognizer.transcribe`, int8 as saved, the same batching); its log-probabilities are kept
and every decoder setting is then measured on the same emissions:

- the champion's test split (clean, car and telephone copies of the dataset version it was
  trained on) and general English outside the templates (bench/train.py's set), greedy and
  with the saved beam decoder;
- the story's held-out new-names and launch-names clips (the same scenario, seeds, voices
  and names as flows/story.py), without and with a hot-word list: the version's newest
  stored list, else one mined as the hot-words flow does from the story's simulated typed
  queries (1,500, seed 9001), decoded with the scope's `hot_words.decoder` settings.

`--workspace` picks the workspace; the scope's registry names the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.report import write_results
from data_contracts.scoping import Scope
from models.decoder import BeamDecoder, BeamSettings, GreedyDecoder, WordLM
from models.recognizer import Recognizer

GENERAL_ENGLISH_CLIPS = 80  # as bench/train.py
GENERAL_ENGLISH_SEED = 55
STORY_EVAL_CLIPS = 120  # flows/story.py's eval_clips
NEW_NAMES_SEED = 7001
LAUNCH_NAMES_SEED = 7002
TYPED_QUERIES = 1500  # flows/story.py's typed_queries
TYPED_QUERIES_SEED = 9001
CHUNK = 32  # clips per transcribe call, as tasks/inference.py's evaluation


@dataclass(frozen=True)
class EmissionSet:
    """One evaluation set as the acoustic model heard it: per clip its (T, V) log-probs
    (None: below the silence threshold, decoded as nothing) and the true transcript."""

    name: str
    emissions: tuple[torch.Tensor | None, ...]
    references: tuple[str, ...]


class _Capture:
    """A decoder that keeps what it is given: clip k's text is "#k", its emissions kept."""

    def __init__(self) -> None:
        self.kept: list[torch.Tensor] = []

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[tuple[str, float]]:
        out = []
        for b in range(log_probs.shape[0]):
            self.kept.append(log_probs[b, : int(lengths[b])].clone())  # (T, V)
            out.append((f"#{len(self.kept) - 1}", 0.0))
        return out


def capture(
    recognizer: Recognizer,
    name: str,
    waves: Sequence[np.ndarray],
    refs: Sequence[str],
    chunk: int = CHUNK,
) -> EmissionSet:
    """Run the recogniser's front end and acoustic model over clips, `chunk` clips to a
    transcribe call (int8 scales activations per batch, so batching is part of the path)."""
    grab = _Capture()
    probe = Recognizer(
        recognizer.float_model, None, recognizer.batch_size, recognizer.silence_peak, False
    )
    probe.model, probe.int8, probe.decoder = recognizer.model, recognizer.int8, grab  # type: ignore[assignment]
    emissions: list[torch.Tensor | None] = []
    for start in range(0, len(waves), chunk):
        for t in probe.transcribe(list(waves[start : start + chunk])):
            emissions.append(grab.kept[int(t.text[1:])] if t.text else None)
    return EmissionSet(name, tuple(emissions), tuple(refs))


def decode(decoder: GreedyDecoder | BeamDecoder, data: EmissionSet) -> tuple[list[str], float]:
    """Hypotheses of one set, and the decoder's milliseconds per clip (one thread)."""
    hyps: list[str] = []
    spent = 0.0
    for e in data.emissions:
        if e is None:
            hyps.append("")
            continue
        t0 = time.perf_counter()
        hyps.append(decoder.decode(e[None], torch.tensor([e.shape[0]]))[0][0])
        spent += time.perf_counter() - t0
    return hyps, 1000.0 * spent / max(1, len(data.emissions))


def with_background(lm: WordLM, words: int, weight: float) -> WordLM:
    """The LM's transcript counts with another general-English background (0 words: closed)."""
    from tasks.lexicon import general_lexicon

    background = general_lexicon(words) if words and weight else None
    return WordLM(
        lm.bigram_counts,
        lm.discount,
        lm.add_k,
        background,
        weight if background else 0,
        lm.trigram_counts,
    )


def scored(decoder: GreedyDecoder | BeamDecoder, data: EmissionSet) -> tuple[float, float, float]:
    """WER, CER and decode ms per clip of one decoder on one set."""
    from tasks.evaluation import cer, wer

    hyps, ms = decode(decoder, data)
    refs = list(data.references)
    return wer(refs, hyps), cer(refs, hyps), ms


# -- the evaluation sets -----------------------------------------------------------------------


def test_split_sets(
    scope: Scope, version: str, recognizer: Recognizer
) -> tuple[list[EmissionSet], set[str], str]:
    """Clean, car and telephone test rows of the augmented version the model was trained on,
    the test split's voices, and where they came from (or why there are none)."""
    import mlflow

    from tasks.augmentation import load_augmented
    from tasks.inference import read_clip

    client = mlflow.MlflowClient()
    run = client.get_run(str(client.get_model_version(scope.registry.model_name, version).run_id))
    augmented = run.data.tags.get("augmented_version") or run.data.params.get("augmented_version")
    if not augmented:
        return [], set(), f"version {version}'s run names no augmented_version"
    data_dir = scope.state.path("augmented_dir") / augmented
    if not (data_dir / "manifest.csv").is_file():
        return [], set(), f"{data_dir} is not in this workspace"
    test = load_augmented(data_dir)
    test = test[test["split"] == "test"]
    sets = []
    for condition in ("clean", "car", "telephone"):
        rows = test[test["condition"] == condition]
        if len(rows):
            waves = [read_clip(data_dir / p) for p in rows["audio_path"]]
            sets.append(capture(recognizer, condition, waves, list(rows["transcript"])))
    return sets, set(test["voice"]), f"{augmented} test split"


def general_english(test_voices: set[str], recognizer: Recognizer, n: int) -> EmissionSet:
    """bench/train.py's general-English sentences, spoken by the test split's voices."""
    from bench.train import general_english_set

    waves, refs = general_english_set(test_voices, n, GENERAL_ENGLISH_SEED)
    return capture(recognizer, "general_english", waves, refs)


def story_sets(
    scope: Scope, recognizer: Recognizer, n: int = STORY_EVAL_CLIPS, names: list[str] | None = None
) -> list[EmissionSet]:
    """The story's fixed new-names and launch-names clips (flows/story.py's seeds)."""
    from tasks.simulation import render_traffic, traffic_voices
    from tasks.story import decode_eval_set, new_entity_names

    voices = traffic_voices.fn(scope)
    names = names or new_entity_names.fn()
    sets = []
    for name, scenario, seed, spoken in (
        ("new_names", "new-names", NEW_NAMES_SEED, names),
        ("launch_names", "stable", LAUNCH_NAMES_SEED, None),
    ):
        clips = render_traffic.fn(scenario, n, voices, seed, spoken)
        held = decode_eval_set.fn(clips)
        # the story transcribes a whole set in one call
        waves = list(held.waves)
        sets.append(capture(recognizer, name, waves, list(held.references), max(1, len(waves))))
    return sets


def hot_word_list(scope: Scope, version: str, recognizer: Recognizer) -> tuple[Any, str]:
    """The version's newest stored list, else one mined from the story's simulated feed."""
    from data_contracts.hot_words import HotWordList, latest_list
    from tasks.hot_words import mine_new_names
    from tasks.simulated_queries import simulated_typed_queries
    from tasks.story import new_entity_names

    name = scope.registry.model_name
    stored = latest_list(scope.state.path("hot_words_dir"), name, version)
    if stored is not None and stored.phrases:
        return stored, f"stored list {stored.label}"
    queries = simulated_typed_queries(new_entity_names.fn(), TYPED_QUERIES, TYPED_QUERIES_SEED)
    mined = mine_new_names(queries, recognizer.lexicon, scope.hot_words)
    listed = HotWordList(
        model_name=name,
        model_version=version,
        version=1,
        phrases=list(mined.phrases),
        counts=mined.counts,
        examples=mined.examples,
        decoder=dict(scope.hot_words.decoder),
        source="bench: simulated typed queries",
    )
    return listed, "mined from the story's simulated typed queries"


# -- the benchmark ----------------------------------------------------------------------------


def registered(scope: Scope, version: str | None, dest: Path) -> tuple[str, Recognizer]:
    """A registered version's recogniser (None: the champion's)."""
    from tasks.registry import champion_version, download_recognizer

    version = version or champion_version(scope)
    if version is None:
        raise SystemExit(f"bench decoding: no champion of {scope.registry.model_name} yet")
    folder = download_recognizer(scope.registry.model_name, version, dest / f"v{version}")
    return version, Recognizer.load(folder)


def measure(
    scope: Scope,
    version: str,
    recognizer: Recognizer,
    story_clips: int = STORY_EVAL_CLIPS,
    general_clips: int = GENERAL_ENGLISH_CLIPS,
    scope_settings: bool = False,
) -> dict[str, Any]:
    """Every decoder figure of one recogniser (see the module docstring); `scope_settings`:
    with the scope's beam settings (training.beam_size/_token/_threshold, hot_words.decoder)
    instead of those saved with the model and its list (what the defaults would give this
    model)."""
    if not isinstance(recognizer.decoder, BeamDecoder):
        raise SystemExit("bench decoding: the champion decodes greedily; nothing to measure")
    beam = recognizer.decoder
    if scope_settings:
        wider: dict[str, float] = {
            "beam_size": scope.training.beam_size,
            "beam_size_token": scope.training.beam_size_token,
            "beam_threshold": scope.training.beam_threshold,
        }
        settings = BeamSettings.from_dict({**beam.settings.to_dict(), **wider})
        beam = BeamDecoder(beam.lm, beam.hot_words, settings)
    # the story's clips first: this process's espeak engine keeps state between utterances,
    # so the same clips come out otherwise once another set was spoken (108 of 120 lengths
    # differ after general English; the story speaks them first in its process)
    story = {s.name: s for s in story_sets(scope, recognizer, story_clips)}
    split, test_voices, test_source = test_split_sets(scope, version, recognizer)
    sets = {s.name: s for s in split}
    sets["general_english"] = general_english(test_voices, recognizer, general_clips)
    figures: dict[str, Any] = {
        "model_version": version,
        "test_split": test_source,
        "settings": "the scope's" if scope_settings else "saved with the model and its list",
    }
    for key in ("wer_clean", "wer_car", "wer_telephone", "greedy_wer_clean", "greedy_wer_car"):
        figures[key] = None  # stays None where the workspace lacks the test split
    greedy = GreedyDecoder()
    spent: list[float] = []
    for name, data in sets.items():
        w, c, ms = scored(beam, data)
        figures[f"wer_{name}"], figures[f"cer_{name}"] = round(w, 4), round(c, 4)
        if name in ("clean", "car"):
            gw, gc, _ = scored(greedy, data)
            figures[f"greedy_wer_{name}"] = round(gw, 4)
            figures[f"greedy_cer_{name}"] = round(gc, 4)
            spent.append(ms)
    listed, origin = hot_word_list(scope, version, recognizer)
    if scope_settings:
        listed = listed.model_copy(update={"decoder": dict(scope.hot_words.decoder)})
    w_before, _, ms_story = scored(beam, story["new_names"])
    w_launch_before = scored(beam, story["launch_names"])[0]
    hot = beam.with_hot_words(listed.phrases, listed.context, listed.decoder)
    w_new, _, ms_hot = scored(hot, story["new_names"])
    w_launch = scored(hot, story["launch_names"])[0]
    figures.update(
        {
            "wer_new_names_before": round(w_before, 4),
            "wer_new_names_hotwords": round(w_new, 4),
            "hotwords_over_before": round(w_new / w_before, 3) if w_before else None,
            "wer_launch_names_before": round(w_launch_before, 4),
            "wer_launch_names_hotwords": round(w_launch, 4),
            # the saved decoder's time on the test split (the story's clips without a test split)
            "decode_ms_per_clip": round(float(np.mean(spent)) if spent else ms_story, 2),
            "decode_ms_per_clip_hotwords": round(ms_hot, 2),
            "hot_words_phrases": len(listed.phrases),
            "hot_words_source": origin,
            "decoder": beam.settings.to_dict(),
            "hot_words_decoder": dict(listed.decoder),
            "lexicon_words": len(recognizer.vocabulary),
            "general_lexicon_weight": beam.lm.background_weight if beam.lm else 0.0,
            "lm_order": beam.lm.order if beam.lm else None,
            "clips": {name: len(s.emissions) for name, s in {**sets, **story}.items()},
        }
    )
    return figures


def main(
    scope: Scope,
    out_dir: Path,
    story_clips: int = STORY_EVAL_CLIPS,
    general_clips: int = GENERAL_ENGLISH_CLIPS,
    version: str | None = None,
    scope_settings: bool = False,
) -> dict[str, Any]:
    """Measure the champion's (or `version`'s) decoder figures; write out_dir/decoding.json
    and print a table."""
    from tasks.registry import configure_mlflow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # decoding is deterministic: one thread, comparable timings
    try:
        configure_mlflow(
            scope.state.url("mlflow_tracking_uri"),
            scope.registry.experiment,
            scope.state.path("mlflow_artifacts"),
        )
        dest = scope.state.workspace / "bench" / "decoding"
        version, recognizer = registered(scope, version, dest)
        figures = measure(scope, version, recognizer, story_clips, general_clips, scope_settings)
    finally:
        torch.set_num_threads(threads)
    write_results(out_dir, "decoding", figures)
    return figures
