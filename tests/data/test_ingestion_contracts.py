"""Ingestion contracts on a real generated manifest with planted bad rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from data_contracts.scoping import AudioScope, DataRules, SplitPolicy
from tasks.ingestion import IngestResult, ingest_manifests, load_dataset
from tasks.manifests import ManifestError, read_manifest
from tasks.synthesis import build_corpus

SR = 16000


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real corpus made by speech synthesis (shared by the tests of this module)."""
    out = tmp_path_factory.mktemp("corpus") / "c"
    build_corpus(out, 8, seed=1)
    return out


def _copy(generated: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(generated, root)
    return root


# (id, how to break it, expected words in the reason)
PLANTED = [
    ("missing", "missing", "missing audio file"),
    ("corrupt", "corrupt", "unreadable audio"),
    ("truncated", "truncated", "unreadable audio"),
    ("outside", "outside", "outside the data root"),
    ("empty-text", "empty_text", "empty transcript"),
    ("filler-only", "filler_only", "empty after normalisation"),
    ("too-long", "too_long", "outside [0.3, 12.0] s"),
    ("nan-samples", "nan", "NaN or infinite"),
    ("clipped", "clipped", "clipped audio"),
    ("silent", "silent", "silent"),
    ("bad/id", "bad_id", "invalid utterance_id"),
]


def _plant(root: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    good = manifest.iloc[0]
    good_wav = root / good["audio_path"]
    rows = []
    for uid, how, _ in PLANTED:
        row = good.copy()
        row["utterance_id"] = uid
        row["audio_path"] = f"audio/{uid.replace('/', '_')}.wav"
        path = root / row["audio_path"]
        if how == "corrupt":
            path.write_bytes(b"RIFF\x00\x00garbage" * 50)
        elif how == "truncated":
            path.write_bytes(good_wav.read_bytes()[:30])
        elif how == "outside":
            (root.parent / "outside.wav").write_bytes(good_wav.read_bytes())
            row["audio_path"] = "../outside.wav"
        elif how in ("empty_text", "filler_only", "bad_id"):
            shutil.copy(good_wav, path)
            row["transcript"] = {"empty_text": "", "filler_only": "um, uh"}.get(
                how, row["transcript"]
            )
        elif how == "too_long":
            sf.write(path, np.random.default_rng(0).normal(0, 0.05, SR * 15), SR)
        elif how == "nan":
            audio = np.full(SR, 0.1, dtype=np.float32)
            audio[100] = np.nan
            sf.write(path, audio, SR, subtype="FLOAT")
        elif how == "clipped":
            sf.write(path, np.sign(np.sin(np.arange(SR) * 0.05)).astype(np.float32), SR)
        elif how == "silent":
            sf.write(path, np.zeros(SR, dtype=np.float32), SR)
        rows.append(row)
    dup = good.copy()  # a second row with the first row's id
    rows.append(dup)
    return pd.concat([manifest, pd.DataFrame(rows)], ignore_index=True)


def _ingest(root: Path, datasets: Path, max_share: float = 0.9) -> IngestResult:
    raw = read_manifest(root / "manifest.csv", "synthetic")
    return ingest_manifests(
        raw,
        [root] * len(raw),
        [root] * len(raw),
        datasets,
        DataRules(max_quarantine_share=max_share),
        AudioScope(),
        SplitPolicy(),
        n_shards=2,
    )


def test_each_planted_row_is_quarantined_with_its_reason(generated: Path, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    _plant(root, manifest).to_csv(root / "manifest.csv", index=False)
    result = _ingest(root, tmp_path / "datasets")

    by_id = {q["utterance_id"]: q["reason"] for q in result.quarantined[:-1]}
    for uid, _, expected in PLANTED:
        assert expected in by_id[uid], (uid, by_id[uid])
    assert "duplicate utterance_id" in str(result.quarantined[-1]["reason"])
    assert result.accepted == len(manifest)
    assert result.dataset_version is not None and result.dataset_dir is not None

    stored = load_dataset(result.dataset_dir)
    assert sorted(stored["utterance_id"]) == sorted(manifest["utterance_id"])
    assert (stored["transcript"] == stored["transcript"].str.lower()).all()
    for path in stored["audio_path"]:
        info = sf.info(result.dataset_dir / path)
        assert info.samplerate == SR and info.channels == 1


def test_reingesting_the_same_input_changes_nothing(generated: Path, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    first = _ingest(root, tmp_path / "datasets")
    assert first.created and first.dataset_dir is not None
    stamp = (first.dataset_dir / "manifest.csv").stat().st_mtime_ns
    second = _ingest(root, tmp_path / "datasets")
    assert second.dataset_version == first.dataset_version
    assert not second.created
    assert (first.dataset_dir / "manifest.csv").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [first.dataset_version]


def test_rejected_ingestion_leaves_stored_versions_intact(generated: Path, tmp_path: Path) -> None:
    root = _copy(generated, tmp_path)
    good = _ingest(root, tmp_path / "datasets")
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    _plant(root, manifest).to_csv(root / "manifest.csv", index=False)
    rejected = _ingest(root, tmp_path / "datasets", max_share=0.1)
    assert rejected.dataset_version is None
    assert rejected.rejection and "quarantined" in rejected.rejection
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == [good.dataset_version]


@pytest.mark.parametrize(
    ("name", "content", "missing"),
    [
        ("m.csv", "audio_path,text\na.wav,hello\n", "transcript"),
        ("m.jsonl", '{"audio_filepath": "a.wav"}\n', "text"),
        ("m.tsv", "client_id\tpath\nx\ta.mp3\n", "sentence"),
    ],
)
def test_manifest_missing_a_column_names_it(
    tmp_path: Path, name: str, content: str, missing: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError, match=missing):
        read_manifest(path, "mine")


def test_nemo_and_commonvoice_readers(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "m.jsonl").write_text(
        '{"audio_filepath": "a.wav", "text": "Hi", "duration": 1.0, "speaker": "s1"}\n'
    )
    (tmp_path / "clips" / "b.mp3").write_bytes(b"")
    (tmp_path / "m.tsv").write_text("client_id\tpath\tsentence\nc1\tb.mp3\tHello there\n")
    nemo = read_manifest(tmp_path / "m.jsonl", "n")
    cv = read_manifest(tmp_path / "m.tsv", "cv")
    assert nemo.loc[0, "voice"] == "s1" and nemo.loc[0, "utterance_id"] == "a"
    assert cv.loc[0, "audio_path"] == "clips/b.mp3" and cv.loc[0, "voice"] == "c1"
