"""Data sources: the synthetic voice-search corpus and manifests people bring."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from data_contracts.scoping import DataSource, SplitPolicy, SyntheticCorpus
from tasks.corpus import GENERAL_TRAINING_WORDS, load_tables
from tasks.ingestion import voice_splits
from tasks.lexicon import general_lexicon
from tasks.manifests import read_manifest
from tasks.synthesis import (
    CORPUS_FORMAT_VERSION,
    CorpusPlan,
    engine_of,
    finish_corpus,
    list_voices,
    plan_corpus,
)
from tasks.synthesis.catalogue import engines_gone, pinned_engines
from tasks.synthesis.voices import Voice


def corpus_dir_for(
    source: DataSource,
    corpus_root: Path,
    engines: Sequence[str],
    split: SplitPolicy | None = None,
) -> Path:
    """Where a synthetic source lives: named by its parameters, so a change never overwrites.

    `engines` is the pinned voice catalogue (tasks.synthesis.catalogue): another catalogue
    gets a corpus folder of its own beside the old one.
    """
    syn = source.synthetic
    assert syn is not None
    voices = f"-v{syn.n_voices}" if syn.n_voices else ""
    # the corpus format is part of the name: a newer format never meets an older folder; so is
    # the cap of a capped engine ("kokoro40"), so changing it builds a corpus beside the old one
    caps = syn.engine_utterances
    named = [f"{e}{caps[e]}" if e in caps else e for e in engines]
    voices += f"-f{CORPUS_FORMAT_VERSION}-{'+'.join(named)}"
    if syn.texts_file is not None:
        texts = hashlib.sha256(Path(syn.texts_file).read_bytes()).hexdigest()[:12]
        return corpus_root / f"{source.name}-n{syn.n_utterances}-s{syn.seed}{voices}-t{texts}"
    eras = "-".join(f"{k}{v:g}" for k, v in sorted(syn.era_weights.items()))
    tables = load_tables(syn.templates_file, syn.entities_file)
    if tables.sha256 != load_tables().sha256:  # the user's own templates or entities
        eras += f"-q{tables.sha256[:12]}"
    if syn.general_utterances:  # spoken by the training voices of `split`: it is named too
        eras += f"-g{syn.general_utterances}"
        if split is not None:
            eras += "-p" + hashlib.sha256(split.model_dump_json().encode()).hexdigest()[:8]
    return corpus_root / f"{source.name}-n{syn.n_utterances}-s{syn.seed}{voices}-{eras}"


def read_texts(path: Path) -> list[str]:
    """The transcripts of a texts file: one per line, blank lines skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the texts file {path}: {exc}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"the texts file {path} holds no transcripts")
    return texts


@task(name="plan-synthetic-corpus")
def plan_synthetic_corpus(
    source: DataSource, corpus_root: Path, n_shards: int, split: SplitPolicy | None = None
) -> CorpusPlan:
    """Plan (or find already built) the voice-search corpus of a synthetic source; its
    general-English utterances are spoken by the voices `split` puts in training."""
    syn = source.synthetic
    if syn is None:
        raise ValueError(f"source {source.name!r} is not synthetic")
    engines = pinned_engines(corpus_root, syn.engines)
    voices = list_voices(seed=syn.seed, n=syn.n_voices, engines=engines)
    out_dir = corpus_dir_for(source, corpus_root, engines, split)
    # the engines whose voices this corpus would hear
    speaking = {engine_of(v.synthesizer) for v in voices} - {
        e for e, n in syn.engine_utterances.items() if n == 0
    }
    gone = [] if out_dir.exists() else engines_gone(sorted(speaking), f"corpus {source.name!r}")
    if gone:  # to be rendered: a pinned engine removed since speaks none of it
        caps = {**syn.engine_utterances, **dict.fromkeys(gone, 0)}
        syn = syn.model_copy(update={"engine_utterances": caps})
        capped = source.model_copy(update={"synthetic": syn})
        out_dir = corpus_dir_for(capped, corpus_root, engines, split)
    return plan_corpus(
        out_dir,
        syn.n_utterances,
        syn.seed,
        era_weights=syn.era_weights,
        voices=voices,
        n_shards=n_shards,
        texts=read_texts(syn.texts_file) if syn.texts_file is not None else None,
        # spoken texts beside the generated corpus: ids of their own ("respoken-000000")
        id_prefix="utt" if syn.texts_file is None else source.name,
        tables=load_tables(syn.templates_file, syn.entities_file),
        engine_utterances=syn.engine_utterances,
        **_general_english(syn, voices, split),
    )


def _general_english(
    syn: SyntheticCorpus, voices: Sequence[Voice], split: SplitPolicy | None
) -> dict[str, Any]:
    """plan_corpus's general-English arguments: how many, said by which (training) voices."""
    if not syn.general_utterances:
        return {}
    if split is None:
        raise ValueError("general-English utterances need the split policy (training voices)")
    # the catalogue's voices split as assign_splits will split this corpus's rows (a training
    # voice lent to a split a small set left empty speaks none of them)
    held = set(split.held_out_synthesizers)
    split_of = voice_splits((v.voice_id for v in voices if v.synthesizer not in held), split)
    speakers = [v.voice_id for v in voices if split_of.get(v.voice_id) == "train"]
    return {
        "general_utterances": syn.general_utterances,
        "general_voices": speakers,
        "general_lexicon": general_lexicon(GENERAL_TRAINING_WORDS),
    }


@task(name="publish-synthetic-corpus")
def publish_corpus(plan: CorpusPlan) -> Path:
    """Publish a corpus once its shards are rendered (every clip checked); return its manifest."""
    return finish_corpus.fn(plan) / "manifest.csv"


@task(name="read-manifest")
def read_source(manifest: Path, source: DataSource) -> tuple[pd.DataFrame, Path, Path]:
    """Read one source's manifest: (RawManifest rows, folder paths are relative to, data root)."""
    kind = None if source.kind == "synthetic" else source.kind
    raw = read_manifest(manifest, source.name, kind=kind)
    root = source.data_root or manifest.parent
    return raw, manifest.parent, root


@task(name="combine-sources")
def combine_sources(
    sources: Sequence[tuple[pd.DataFrame, Path, Path]],
) -> tuple[pd.DataFrame, list[Path], list[Path]]:
    """One RawManifest frame of every source's rows, with each row's folder and data root."""
    frames, folders, roots = [], [], []
    for raw, folder, root in sources:
        frames.append(raw)
        folders += [folder] * len(raw)
        roots += [root] * len(raw)
    return pd.concat(frames, ignore_index=True), folders, roots
