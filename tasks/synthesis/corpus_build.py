"""The synthetic voice-search corpus: plan it, then publish it once rendered.

A flow plans the corpus (`plan_corpus`), maps `tasks.synthesis.render.synthesise_shard` over the
plan's shards through the scope's task runner, and publishes with `finish_corpus`.

espeak carries state between utterances within a process (see tasks.synthesis.espeak), so the
plan cuts the utterances into fixed blocks of BLOCK_SIZE, and every block is rendered in a fresh
process. Shards are whole blocks, so a corpus is byte-identical for a seed whatever the number
of shards, workers or the task runner.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from prefect import task

from models.audio import SAMPLE_RATE
from tasks.corpus import (
    DEFAULT_ERA_WEIGHTS,
    Query,
    QueryTables,
    general_training_queries,
    generate_queries,
    load_tables,
)
from tasks.fanout import shards
from tasks.synthesis.corpus_store import (
    check_existing,
    content_sha256,
    publish,
    sha256_file,
    write_manifest,
)
from tasks.synthesis.espeak import espeak_version
from tasks.synthesis.kokoro import kokoro_version
from tasks.synthesis.voices import (
    DEFAULT_VOICE_SEED,
    ENGINES,
    Voice,
    assign_voices,
    check_voice,
    engine_of,
    list_voices,
    shuffled_rounds,
)
from tasks.text import normalise_transcript

logger = logging.getLogger(__name__)

CORPUS_SAMPLE_RATE = SAMPLE_RATE
# 2: audio resampled with soxr (models.audio.resample) instead of scipy's resample_poly
CORPUS_FORMAT_VERSION = 2
# utterances rendered by one fresh process; part of a corpus's identity (see module docstring)
BLOCK_SIZE = 24
# engines spoken a shard at a time ahead of the blocks (start-up per call, a model to load);
# their raw output waits in the staging folder's SPOKEN_DIR until its block is rendered
BATCHED_SYNTHESIZERS = frozenset({"festival", "festival-hts", "kokoro"})
SPOKEN_DIR = "spoken"


@dataclass(frozen=True)
class Utterance:
    """One utterance to render: its index (for its seed), id, spoken text, voice and labels."""

    index: int
    utterance_id: str
    spoken: str
    voice: Voice
    query: Query


@dataclass(frozen=True)
class CorpusPlan:
    """What to render and where: `shards` is empty when the folder already holds the corpus."""

    out_dir: Path
    staging: Path | None
    seed: int
    sample_rate: int
    params: dict[str, Any]
    utterances: tuple[Utterance, ...]
    shards: list[list[Utterance]] = field(default_factory=list)

    @property
    def reused(self) -> bool:
        return self.staging is None

    @property
    def audio_dir(self) -> Path:
        return (self.staging or self.out_dir) / "audio"


def utterance_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of one utterance's rendering, independent of worker and order."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index)))


def _corpus_params(
    n_utterances: int,
    seed: int,
    era_weights: Mapping[str, float],
    voices: Sequence[Voice],
    texts: Sequence[str] | None = None,
    engine_utterances: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The parameters that define a corpus (stored in corpus.json, compared on reuse)."""
    params: dict[str, Any] = {
        "format_version": CORPUS_FORMAT_VERSION,
        "n_utterances": n_utterances,
        "seed": seed,
        "era_weights": {k: float(era_weights[k]) for k in sorted(era_weights)},
        "sample_rate": CORPUS_SAMPLE_RATE,
        "shard_size": BLOCK_SIZE,
        "engines": catalogue_engines(voices),
        "voices": [asdict(v) for v in voices],
    }
    if engine_utterances:  # only where a capped engine speaks: older corpora keep their params
        params["engine_utterances"] = dict(engine_utterances)
    if texts is not None:
        params["texts_sha256"] = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    return params


def spoken_queries(texts: Sequence[str], n_utterances: int) -> list[Query]:
    """Given transcripts, cycled to `n_utterances` (re-speaking labelled production queries)."""
    cleaned = [t.strip() for t in texts if t.strip()]
    if not cleaned:
        raise ValueError("expected at least one non-empty transcript to speak, got none")
    return [
        Query(text=cleaned[i % len(cleaned)], intent="respoken", entities=(), era="respoken")
        for i in range(n_utterances)
    ]


def _checked_voices(voices: Sequence[Voice] | None) -> list[Voice]:
    """The voices to speak with (the default espeak pool when None), distinct Voice objects."""
    if voices is None:
        voices = list_voices(DEFAULT_VOICE_SEED, engines=("espeak",))
    voices = list(voices)
    if not voices or not all(isinstance(v, Voice) for v in voices):
        raise ValueError(f"expected a non-empty sequence of Voice, got {voices!r:.200}")
    if len({v.voice_id for v in voices}) != len(voices):
        raise ValueError("expected voices with distinct voice_id values")
    return voices


def catalogue_engines(voices: Sequence[Voice]) -> list[str]:
    """The engines a voice list speaks with, in catalogue order."""
    used = {engine_of(v.synthesizer) for v in voices}
    return [e for e in ENGINES if e in used]


def engine_versions(engines: Sequence[str]) -> dict[str, str]:
    """The version of each engine (recorded in corpus.json beside the catalogue)."""
    in_process = {"espeak": espeak_version, "kokoro": kokoro_version}  # libraries, no binary
    found = {}
    for engine in engines:
        if engine in in_process:
            found[engine] = in_process[engine]()
            continue
        binary = shutil.which(engine)
        try:
            out = subprocess.run(
                [binary or engine, "--version"], capture_output=True, text=True, timeout=30
            )
            lines = (out.stdout or out.stderr).strip().splitlines()
            named = [line for line in lines if "version" in line.lower()] or lines
            found[engine] = named[0].strip()[:120]
        except (OSError, subprocess.SubprocessError, IndexError):
            found[engine] = "unknown"
    return found


def plan_corpus(
    out_dir: Path,
    n_utterances: int,
    seed: int,
    era_weights: Mapping[str, float] = DEFAULT_ERA_WEIGHTS,
    voices: Sequence[Voice] | None = None,
    n_shards: int = 1,
    texts: Sequence[str] | None = None,
    id_prefix: str = "utt",
    tables: QueryTables | None = None,
    engine_utterances: Mapping[str, int] | None = None,
    general_utterances: int = 0,
    general_voices: Sequence[str] = (),
    general_lexicon: Mapping[str, float] | None = None,
) -> CorpusPlan:
    """Check the inputs and the folder; cut the utterances into n_shards of whole blocks.

    With `texts`, those transcripts are spoken (cycled to `n_utterances`, each round by other
    voices) instead of generated queries, and `era_weights` is not used. A folder that already
    holds this corpus gives a plan with no shards; a staging folder is made otherwise.
    `engine_utterances` caps what a slow engine's voices speak (Kokoro: a few test clips).
    `general_utterances` general-English training utterances (tasks.corpus
    `general_training_queries`, words of `general_lexicon`) follow the others, spoken only by
    `general_voices` (voice ids: the caller's training voices, so no test voice speaks them).
    """
    out_dir = Path(out_dir)
    if not isinstance(n_utterances, int) or n_utterances < 1:
        raise ValueError(f"expected a positive number of utterances, got {n_utterances!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"expected a non-negative integer seed, got {seed!r}")
    voices = _checked_voices(voices)
    if texts is None:
        # validates era_weights
        queries = generate_queries(n_utterances, seed, era_weights, tables)
    else:
        queries = spoken_queries(texts, n_utterances)
    assignment, capped = assign_voices(n_utterances, voices, seed, engine_utterances or {})
    params = _corpus_params(n_utterances, seed, era_weights, voices, texts, capped)
    if general_utterances:
        speakers = set(general_voices)
        pool = [i for i, v in enumerate(voices) if v.voice_id in speakers]
        if not pool:
            raise ValueError(
                f"{general_utterances} general-English utterances need training voices to "
                f"speak them; none of {len(voices)} voices is among {list(general_voices)[:5]}"
            )
        queries = queries + general_training_queries(
            general_utterances, seed, general_lexicon or {}
        )
        assignment = assignment + shuffled_rounds(
            general_utterances, pool, np.random.default_rng([seed, 5])
        )
        params["general_utterances"] = general_utterances
        params["general_voices"] = sorted(voices[i].voice_id for i in pool)
        n_utterances += general_utterances
    if id_prefix != "utt":
        params["id_prefix"] = id_prefix
    if texts is None and tables is not None and tables.sha256 != load_tables().sha256:
        params["tables_sha256"] = tables.sha256
    width = max(6, len(str(n_utterances - 1)))
    utterances = tuple(
        Utterance(
            i,
            f"{id_prefix}-{i:0{width}d}",
            normalise_transcript(q.text, drop_fillers=()),
            voices[assignment[i]],
            q,
        )
        for i, q in enumerate(queries)
    )
    if check_existing(out_dir, params):
        logger.info("reusing corpus %s (same parameters)", out_dir)
        return CorpusPlan(out_dir, None, seed, CORPUS_SAMPLE_RATE, params, utterances)
    for index in sorted(set(assignment)):  # only rendering needs the engines: a corpus is reused
        check_voice(voices[index])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    (staging / "audio").mkdir(parents=True)
    blocks = [list(utterances[s : s + BLOCK_SIZE]) for s in range(0, n_utterances, BLOCK_SIZE)]
    cut = [[u for block in shard for u in block] for shard in shards(blocks, max(1, n_shards))]
    return CorpusPlan(out_dir, staging, seed, CORPUS_SAMPLE_RATE, params, utterances, cut)


@task(name="publish-corpus")
def finish_corpus(plan: CorpusPlan) -> Path:
    """Write manifest.csv and corpus.json beside the rendered audio and publish the folder."""
    if plan.staging is None:
        return plan.out_dir
    staging = plan.staging
    try:
        rows = [
            {
                "utterance_id": u.utterance_id,
                "audio_path": f"audio/{u.utterance_id}.wav",
                "transcript": u.query.text,
                "voice": u.voice.voice_id,
                "synthesizer": u.voice.synthesizer,
                "intent": u.query.intent,
                "entities": "|".join(u.query.entities),
                "era": u.query.era,
            }
            for u in plan.utterances
        ]
        missing = [r["audio_path"] for r in rows if not (staging / r["audio_path"]).is_file()]
        if missing:
            raise RuntimeError(f"{len(missing)} clips were not rendered (e.g. {missing[0]})")
        durations = [sf.info(staging / r["audio_path"]).duration for r in rows]
        write_manifest(staging / "manifest.csv", rows)
        info = {
            "params": plan.params,
            "manifest_sha256": sha256_file(staging / "manifest.csv"),
            "content_sha256": content_sha256(staging, [r["audio_path"] for r in rows]),
            "total_duration_s": round(sum(durations), 3),
            "engine_versions": engine_versions(plan.params["engines"]),
        }
        shutil.rmtree(staging / SPOKEN_DIR, ignore_errors=True)
        (staging / "corpus.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        publish(staging, plan.out_dir, plan.params)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("synthesised %d utterances into %s", len(rows), plan.out_dir)
    return plan.out_dir


@task(name="discard-partial-corpus")
def discard_partial(plan: CorpusPlan) -> None:
    """Remove a plan's staging folder (after a failed shard); a no-op once published."""
    if plan.staging is not None:
        shutil.rmtree(plan.staging, ignore_errors=True)
