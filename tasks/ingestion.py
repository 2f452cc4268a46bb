"""Ingestion: probe every clip, apply the data-definition rules, quarantine bad rows with a
reason, split by voice, and write an immutable, content-hashed dataset version.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import soundfile as sf
from pandera.typing import DataFrame
from prefect import task

from data_contracts.manifest import UTTERANCE_ID_PATTERN, Manifest, RawManifest
from data_contracts.scoping import AudioScope, DataRules, SplitPolicy
from models.audio import (
    SAMPLE_RATE,
    UnusableAudio,
    compute_audio_features,
    normalise_loudness,
    read_audio_file,
    resample,
    trim_silence,
)
from models.text import TRANSCRIPT_PATTERN
from tasks.fanout import shards
from tasks.text import normalise_transcript

MANIFEST_COLUMNS = list(Manifest.to_schema().columns)
_TRANSCRIPT_RE = re.compile(TRANSCRIPT_PATTERN)
_ID_RE = re.compile(UTTERANCE_ID_PATTERN)
# a clip may be trimmed to the scope's duration; longer than this many times it is refused
# before it is decoded whole (a small compressed file can expand to gigabytes)
PROBE_DURATION_FACTOR = 4.0


class IngestionRejected(RuntimeError):
    """The quarantined share passed the scope's threshold; nothing was written as a version."""


@dataclass
class IngestResult:
    dataset_version: str | None
    dataset_dir: Path | None
    accepted: int
    quarantined: list[dict[str, object]] = field(default_factory=list)
    created: bool = False
    total: int = 0
    rejection: str | None = None

    @property
    def quarantined_share(self) -> float:
        return len(self.quarantined) / self.total if self.total else 0.0

    def summary(self) -> dict[str, object]:
        """The JSON summary printed by `voicecycle ingest --json`."""
        return {
            "dataset_version": self.dataset_version,
            "dataset_dir": str(self.dataset_dir) if self.dataset_dir else None,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "quarantined_share": round(self.quarantined_share, 4),
            "created": self.created,
            "total": self.total,
            "rejection": self.rejection,
        }


@dataclass(frozen=True)
class RowJob:
    index: int
    row: dict[str, str]
    audio_file: Path
    data_root: Path


def _resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    return resample(audio, sr_from, sr_to)


def process_row(
    job: RowJob, out_audio_dir: Path, rules: DataRules, scope_audio: AudioScope
) -> tuple[dict[str, object] | None, str | None]:
    """Probe one clip and apply the rules: (manifest row, None) or (None, quarantine reason)."""
    row = job.row
    try:
        resolved = job.audio_file.resolve()
    except OSError as exc:
        return None, f"audio path cannot be resolved: {exc}"
    if not resolved.is_relative_to(job.data_root.resolve()):
        return None, (
            f"audio path {row['audio_path']!r} is outside the data root {job.data_root}: "
            "pass --data-root DIR (`voicecycle ingest` and `voicecycle evaluate` take it) or set "
            "the source's data_root"
        )
    if not resolved.is_file():
        return None, f"missing audio file {row['audio_path']!r}"
    try:  # the upload decoder's checks; decodes at most PROBE_DURATION_FACTOR x the limit
        audio, sr = read_audio_file(resolved, PROBE_DURATION_FACTOR * scope_audio.max_duration_s)
    except UnusableAudio as exc:
        words = "unreadable audio" if exc.code == "undecodable_audio" else "unusable audio"
        return None, f"{words} {row['audio_path']!r}: {exc.message}"
    except OSError as exc:
        return None, f"unreadable audio {row['audio_path']!r}: {exc}"
    if audio.shape[0] == 0:
        return None, f"empty audio {row['audio_path']!r} (0 samples)"
    if not np.isfinite(audio).all():
        return None, "audio has NaN or infinite samples"
    if not 4000 <= sr <= 192_000:
        return None, f"implausible sample rate {sr} Hz"
    mono = audio.mean(axis=1)
    clipping = float(np.mean(np.abs(mono) >= 0.999))
    if clipping > rules.max_clipping_share:
        return None, (
            f"clipped audio: {clipping:.1%} of samples at full scale "
            f"(limit {rules.max_clipping_share:.1%})"
        )
    mono = resample(mono, sr, SAMPLE_RATE)
    raw_text = row.get("transcript")
    if raw_text is None or not str(raw_text).strip():
        return None, "empty transcript"
    text = normalise_transcript(
        str(raw_text),
        lowercase=rules.lowercase,
        expand_numbers=rules.expand_numbers,
        drop_fillers=rules.drop_fillers,
    )
    if not text:
        return None, f"transcript is empty after normalisation (raw: {raw_text!r})"
    if not _TRANSCRIPT_RE.match(text):
        return None, f"transcript has characters outside the vocabulary after rules: {text!r}"
    if float(np.max(np.abs(mono))) < 1e-4:
        return None, "audio is silent"
    mono = trim_silence(mono, SAMPLE_RATE, rules.trim_silence_top_db, rules.keep_silence_ms)
    mono = normalise_loudness(mono, rules.loudness_dbfs)
    feats = compute_audio_features(mono, SAMPLE_RATE)
    if not scope_audio.min_duration_s <= feats.duration_s <= scope_audio.max_duration_s:
        return None, (
            f"duration {feats.duration_s:.2f} s outside "
            f"[{scope_audio.min_duration_s}, {scope_audio.max_duration_s}] s"
        )
    if feats.silence_share > rules.max_silence_share:
        return None, f"mostly silence ({feats.silence_share:.0%} of frames)"
    rate = len(text) / feats.duration_s
    if rate > rules.max_chars_per_second:
        return None, (
            f"transcript too long for the audio ({rate:.0f} chars/s, "
            f"limit {rules.max_chars_per_second:.0f}): wrong audio or label?"
        )
    buf = io.BytesIO()
    sf.write(buf, mono, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    rel = f"audio/{row['utterance_id']}.wav"
    (out_audio_dir / f"{row['utterance_id']}.wav").write_bytes(data)
    return {
        "utterance_id": row["utterance_id"],
        "audio_path": rel,
        "transcript": text,
        "raw_transcript": str(raw_text),
        "duration_s": round(feats.duration_s, 4),
        "sample_rate": SAMPLE_RATE,
        "rms_dbfs": round(min(feats.rms_dbfs, 0.0), 3),
        "snr_db_estimate": round(feats.snr_db_estimate, 3),
        "voice": row["voice"],
        "synthesizer": row["synthesizer"],
        "intent": row["intent"],
        "entities": row["entities"],
        "era": row["era"],
        "source": row["source"],
        "split": "",
        "audio_sha256": hashlib.sha256(data).hexdigest(),
    }, None


def precheck_rows(raw: pd.DataFrame) -> dict[int, str]:
    """Row-level problems visible without audio: bad or duplicate ids, empty paths."""
    reasons: dict[int, str] = {}
    first_seen: dict[str, int] = {}
    for i, (uid, path) in enumerate(zip(raw["utterance_id"], raw["audio_path"], strict=True)):
        if not _ID_RE.match(str(uid)):
            reasons[i] = f"invalid utterance_id {uid!r} (letters, digits, '_', '.', ':', '-')"
        elif uid in first_seen:
            reasons[i] = f"duplicate utterance_id {uid!r} (first at row {first_seen[uid]})"
        elif not str(path).strip():
            reasons[i] = "empty audio_path"
        else:
            first_seen[uid] = i
    return reasons


def voice_draw(voice: str, seed: int) -> float:
    """A voice's fixed place in [0, 1): a hash of the voice and the seed, not of the others."""
    digest = hashlib.sha256(f"{seed}:{voice}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def voice_split(voice: str, policy: SplitPolicy) -> str:
    """The split a (not held-out) voice's clips land in: its hash draw against the shares.
    (`assign_splits` may still lend a training voice to a split a small set left empty.)"""
    draw = voice_draw(voice, policy.seed)
    test_below, dev_below = policy.test_share, policy.test_share + policy.dev_share
    return "test" if draw < test_below else "dev" if draw < dev_below else "train"


def assign_splits(df: pd.DataFrame, policy: SplitPolicy) -> pd.Series:
    """Split by voice: a voice's clips all land in one split; held-out synthesizers apart.

    A voice's split depends on that voice alone (its hash draw against the shares), so adding
    sources (labelled production batches, re-spoken queries) never moves a voice that was
    held out into training. Only a split left empty in a small set (3 voices or more) borrows
    the voice with the lowest draw that is still in training.
    """
    held = df["synthesizer"].isin(policy.held_out_synthesizers)
    split_of = voice_splits(set(df.loc[~held, "voice"]), policy)
    split = df["voice"].map(lambda v: split_of.get(v, "train"))
    split[held] = "cross_synth"
    return split


def voice_splits(voices: Iterable[str], policy: SplitPolicy) -> dict[str, str]:
    """The split of each (not held-out) voice of a set, as `assign_splits` gives it."""
    ordered = sorted(set(voices), key=lambda v: (voice_draw(v, policy.seed), v))
    split_of = {voice: voice_split(voice, policy) for voice in ordered}
    if len(ordered) >= 3:
        for name in ("test", "dev"):
            if name not in split_of.values():
                spare = next((v for v in ordered if split_of[v] == "train"), None)
                if spare is not None:
                    split_of[spare] = name
    return split_of


def manifest_bytes(df: pd.DataFrame) -> bytes:
    """Canonical CSV bytes of a manifest: the content the version hash is taken over."""
    ordered = df[MANIFEST_COLUMNS].sort_values("utterance_id").reset_index(drop=True)
    return ordered.to_csv(index=False, float_format="%.4f", lineterminator="\n").encode()


def version_of(content: bytes, salt: str = "") -> str:
    """Content hash used as an immutable dataset version name."""
    return "ds-" + hashlib.sha256(salt.encode() + content).hexdigest()[:12]


def publish_dir(staging: Path, final: Path) -> bool:
    """Atomically move a finished staging folder into place; keep an existing version intact."""
    if final.exists():
        shutil.rmtree(staging, ignore_errors=True)
        return False
    try:
        os.rename(staging, final)
    except OSError:  # another run published the same content first
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


ProbeOutcome = tuple[int, dict[str, object] | None, str | None]
# a write refused for lack of room is the disk's fault, not the clip's: never a quarantine
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True)
class IngestPlan:
    """Rows to probe, cut into shards, the rows already quarantined, and the staging folder."""

    staging: Path
    shards: list[list[RowJob]]
    reasons: dict[int, str]


@task(name="plan-ingestion")
@pa.check_types(lazy=True)
def plan_ingestion(
    raw: DataFrame[RawManifest],
    manifest_dirs: Sequence[Path],
    data_roots: Sequence[Path],
    datasets_dir: Path,
    n_shards: int,
) -> IngestPlan:
    """Pre-check the rows, cut the rest into n_shards probe jobs, make a staging folder."""
    if not (len(raw) == len(manifest_dirs) == len(data_roots)):
        raise ValueError("raw, manifest_dirs and data_roots must have the same length")
    reasons = precheck_rows(raw)
    jobs = [
        RowJob(i, rec, manifest_dirs[i] / rec["audio_path"], data_roots[i])
        for i, rec in enumerate(raw.to_dict("records"))
        if i not in reasons
    ]
    datasets_dir.mkdir(parents=True, exist_ok=True)
    staging = datasets_dir / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "audio").mkdir(parents=True)
    return IngestPlan(staging, shards(jobs, max(1, n_shards)), reasons)


@task(name="probe-audio-shard")
def probe_shard(
    jobs: list[RowJob], out_audio_dir: Path, rules: DataRules, scope_audio: AudioScope
) -> list[ProbeOutcome]:
    """Probe and normalise one shard of clips into out_audio_dir: (row index, row, reason)."""
    out: list[ProbeOutcome] = []
    for job in jobs:
        try:
            row, reason = process_row(job, out_audio_dir, rules, scope_audio)
        except OSError as exc:
            if exc.errno in NO_ROOM:  # the run fails (nothing is published), clips are fine
                raise
            row, reason = None, f"could not process audio: {type(exc).__name__}: {exc}"
        except Exception as exc:  # one bad clip must never stop the whole ingestion
            row, reason = None, f"could not process audio: {type(exc).__name__}: {exc}"
        out.append((job.index, row, reason))
    return out


@task(name="version-dataset")
def version_dataset(
    raw: pd.DataFrame,
    plan: IngestPlan,
    probed: Sequence[Sequence[ProbeOutcome]],
    datasets_dir: Path,
    rules: DataRules,
    split_policy: SplitPolicy,
) -> IngestResult:
    """Quarantine, split and publish the probed rows as a content-hashed dataset version."""
    staging = plan.staging
    try:
        reasons = dict(plan.reasons)
        accepted: dict[int, dict[str, object]] = {}
        for outcomes in probed:
            _collect(list(outcomes), accepted, reasons)
        records = raw.to_dict("records")
        quarantined = [
            {
                "row": i,
                "utterance_id": str(records[i]["utterance_id"]),
                "audio_path": str(records[i]["audio_path"]),
                "source": str(records[i]["source"]),
                "reason": reasons[i],
            }
            for i in sorted(reasons)
        ]
        result = IngestResult(None, None, len(accepted), quarantined, total=len(raw))
        if not accepted or result.quarantined_share > rules.max_quarantine_share:
            result.rejection = (
                f"{len(quarantined)} of {len(raw)} rows quarantined "
                f"({result.quarantined_share:.0%} > limit {rules.max_quarantine_share:.0%}); "
                "no dataset version was written. First reasons: "
                + "; ".join(f"row {q['row']}: {q['reason']}" for q in quarantined[:3])
            )
            return result
        df = split_manifest(pd.DataFrame([accepted[i] for i in sorted(accepted)]), split_policy)
        content = manifest_bytes(df)
        version = version_of(content)
        (staging / "manifest.csv").write_bytes(content)
        pd.DataFrame(
            quarantined, columns=["row", "utterance_id", "audio_path", "source", "reason"]
        ).to_csv(staging / "quarantine.csv", index=False)
        (staging / "version.json").write_text(
            json.dumps(
                {
                    "dataset_version": version,
                    "rows": len(df),
                    "splits": df["split"].value_counts().to_dict(),
                    "rules": rules.model_dump(mode="json"),
                    "split_policy": split_policy.model_dump(mode="json"),
                },
                indent=2,
                sort_keys=True,
            )
        )
        final = datasets_dir / version
        created = publish_dir(staging, final)
        result.dataset_version, result.dataset_dir, result.created = version, final, created
        return result
    finally:
        discard_staging.fn(plan)


@task(name="discard-ingestion-staging")
def discard_staging(plan: IngestPlan) -> None:
    """Remove the staging folder of a plan (after publication or a failed shard)."""
    if plan.staging.exists():
        shutil.rmtree(plan.staging, ignore_errors=True)


@pa.check_types(lazy=True)
def split_manifest(accepted: pd.DataFrame, split_policy: SplitPolicy) -> DataFrame[Manifest]:
    """The accepted rows with their split by voice, in the Manifest contract's columns."""
    df = accepted.assign(split=assign_splits(accepted, split_policy))
    return df[MANIFEST_COLUMNS]


def ingest_manifests(
    raw: pd.DataFrame,
    manifest_dirs: Sequence[Path],
    data_roots: Sequence[Path],
    datasets_dir: Path,
    rules: DataRules,
    scope_audio: AudioScope,
    split_policy: SplitPolicy,
    n_shards: int = 1,
) -> IngestResult:
    """The ingest flow's steps one after another (tests, benchmarks): plan, probe, version."""
    plan = plan_ingestion.fn(raw, manifest_dirs, data_roots, datasets_dir, n_shards)
    try:
        probed = [
            probe_shard.fn(jobs, plan.staging / "audio", rules, scope_audio) for jobs in plan.shards
        ]
    except BaseException:
        discard_staging.fn(plan)
        raise
    return version_dataset.fn(raw, plan, probed, datasets_dir, rules, split_policy)


def _collect(
    chunk_result: list[tuple[int, dict[str, object] | None, str | None]],
    accepted: dict[int, dict[str, object]],
    reasons: dict[int, str],
) -> None:
    for index, row, reason in chunk_result:
        if row is not None:
            accepted[index] = row
        else:
            reasons[index] = reason or "rejected"


@pa.check_types(lazy=True)
def load_dataset(dataset_dir: Path) -> DataFrame[Manifest]:
    """Read a dataset version's manifest back through the Manifest contract."""
    path = dataset_dir / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no dataset version at {dataset_dir} (missing manifest.csv)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@task(name="enforce-quarantine-limit")
def enforce_quarantine_limit(result: IngestResult) -> str:
    """Fail the run (after the report is published) when ingestion rejected the data."""
    if result.rejection or result.dataset_version is None:
        raise IngestionRejected(result.rejection or "no dataset version was written")
    return result.dataset_version
