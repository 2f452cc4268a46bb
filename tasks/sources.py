"""Data sources: the synthetic voice-search corpus and manifests people bring."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from prefect import task

from data_contracts.scoping import DataSource
from tasks.manifests import read_manifest
from tasks.synthesis import build_corpus, list_voices


def corpus_dir_for(source: DataSource, corpus_root: Path) -> Path:
    """Where a synthetic source lives: named by its parameters, so a change never overwrites."""
    syn = source.synthetic
    assert syn is not None
    voices = f"-v{syn.n_voices}" if syn.n_voices else ""
    if syn.texts_file is not None:
        texts = hashlib.sha256(Path(syn.texts_file).read_bytes()).hexdigest()[:12]
        return corpus_root / f"{source.name}-n{syn.n_utterances}-s{syn.seed}{voices}-t{texts}"
    eras = "-".join(f"{k}{v:g}" for k, v in sorted(syn.era_weights.items()))
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


@task(name="synthesize-corpus")
def synthesize_corpus(source: DataSource, corpus_root: Path, progress: bool = True) -> Path:
    """Synthesise (or reuse) the voice-search corpus of a synthetic source; return its manifest."""
    syn = source.synthetic
    if syn is None:
        raise ValueError(f"source {source.name!r} is not synthetic")
    voices = list_voices(seed=syn.seed, n=syn.n_voices)
    out = corpus_dir_for(source, corpus_root)
    build_corpus(
        out,
        syn.n_utterances,
        syn.seed,
        era_weights=syn.era_weights,
        voices=voices,
        progress=progress,
        texts=read_texts(syn.texts_file) if syn.texts_file is not None else None,
        # spoken texts beside the generated corpus: ids of their own ("respoken-000000")
        id_prefix="utt" if syn.texts_file is None else source.name,
    )
    return out / "manifest.csv"


@task(name="read-manifest")
def read_source(manifest: Path, source: DataSource) -> tuple[pd.DataFrame, Path, Path]:
    """Read one source's manifest: (RawManifest rows, folder paths are relative to, data root)."""
    kind = None if source.kind == "synthetic" else source.kind
    raw = read_manifest(manifest, source.name, kind=kind)
    root = source.data_root or manifest.parent
    return raw, manifest.parent, root
