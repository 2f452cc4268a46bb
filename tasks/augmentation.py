"""Car-noise augmentation of a dataset version: noisy copies mixed at sampled SNRs.

Training rows get a noisy copy with probability `augmented_share` (SNR from the policy's
range); every dev, test and cross-synth row gets one at the in-car test range, so that the
in-car slice of every evaluation is measured on the same fixed audio.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import soundfile as sf
from pandera.typing import DataFrame
from prefect import task

from data_contracts.manifest import AugmentedManifest, Manifest
from data_contracts.scoping import AugmentationPolicy
from models.audio import SAMPLE_RATE
from tasks.acoustics import PLAIN_CHAIN, apply_chain, describe_chain, plan_chain
from tasks.artifacts import markdown_table, png_markdown, publish_markdown
from tasks.fanout import shards
from tasks.ingestion import publish_dir
from tasks.noise import (
    NOISE_TYPES,
    car_noise,
    load_noise_recordings,
    mix_at_snr,
    noise_from_recording,
    plot_noise_summary,
)

AUGMENTED_COLUMNS = list(AugmentedManifest.to_schema().columns)


@dataclass(frozen=True)
class AugmentResult:
    version: str
    directory: Path
    created: bool
    rows: int
    noisy_rows: int


def row_rng(seed: int, utterance_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the utterance, not on the order of work."""
    digest = hashlib.sha256(f"{seed}:{utterance_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def noise_menu(policy: AugmentationPolicy, recordings: list[str]) -> tuple[list[str], np.ndarray]:
    """Noise types with their sampling probabilities (recordings named `rec:<stem>`)."""
    unknown = [t for t in policy.noise_types if t not in NOISE_TYPES]
    if unknown:
        raise ValueError(f"unknown noise types {unknown}; known: {list(NOISE_TYPES)}")
    kinds = list(policy.noise_types) + [f"rec:{r}" for r in recordings]
    weights = np.array([policy.noise_weights.get(k, 1.0) for k in kinds], dtype=float)
    if weights.sum() <= 0:
        raise ValueError("noise weights sum to zero: at least one noise type needs weight > 0")
    return kinds, weights / weights.sum()


PLAN_COLUMNS = ["parent_id", "condition", "noise_type", "snr_db", "noise_seed", *PLAIN_CHAIN]
COPY_SUFFIX = {"car": "+car", "telephone": "+tel"}


def plan_augmentation(
    manifest: pd.DataFrame, policy: AugmentationPolicy, kinds: list[str], probs: np.ndarray
) -> pd.DataFrame:
    """Decide, per row, its copies (pure): a noisy copy (which noise, which SNR and, for
    training, which acoustic chain) and a telephone copy (which codec, and a chain)."""
    plans = []
    for row in manifest.itertuples(index=False):
        rng = row_rng(policy.seed, row.utterance_id)
        train = row.split == "train"
        noisy = not train or rng.random() < policy.augmented_share
        if noisy:
            lo, hi = (
                (policy.snr_db_min, policy.snr_db_max)
                if train
                else (policy.test_snr_db_min, policy.test_snr_db_max)
            )
            snr = rng.uniform(lo, hi)
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            seed = int(rng.integers(2**31))
            # dev/test in-car copies stay plain noise: the same audio the targets speak of
            chain = plan_chain(policy, rng, line=False) if train else dict(PLAIN_CHAIN)
            plans.append(
                {
                    "parent_id": row.utterance_id,
                    "condition": "car",
                    "noise_type": kind,
                    "snr_db": round(float(snr), 2),
                    "noise_seed": seed,
                    **chain,
                }
            )
        line_rng = row_rng(policy.seed, f"{row.utterance_id}+tel")
        share = policy.telephone_share if train else policy.test_telephone_share
        if line_rng.random() < share:
            chain = plan_chain(policy, line_rng, line=True)
            if not train:  # a plain call: the codec only
                chain = {**PLAIN_CHAIN, "codec": chain["codec"], "chain_seed": 0}
            plans.append(
                {
                    "parent_id": row.utterance_id,
                    "condition": "telephone",
                    "noise_type": "none",
                    "snr_db": np.nan,
                    "noise_seed": 0,
                    **chain,
                }
            )
    return pd.DataFrame(plans, columns=PLAN_COLUMNS)


@task(name="mix-car-noise-shard")
def mix_shard(
    jobs: list[dict[str, object]], clean_dir: Path, out_dir: Path, noise_dir: Path | None
) -> int:
    """Mix one shard of planned noisy copies from clean_dir into out_dir; count them."""
    recordings = load_noise_recordings(noise_dir, SAMPLE_RATE) if noise_dir else {}
    for job in jobs:
        speech, sr = sf.read(clean_dir / str(job["audio_path"]), dtype="float32")
        if sr != SAMPLE_RATE:
            raise ValueError(f"{job['audio_path']}: expected {SAMPLE_RATE} Hz, got {sr}")
        chain = {k: job[k] for k in PLAIN_CHAIN}
        add_noise = None
        if job["condition"] == "car":
            add_noise = _noise_mixer(job, recordings)
        mixed = apply_chain(speech, SAMPLE_RATE, chain, add_noise)
        buffer = io.BytesIO()  # encoded in memory: a full disk is then an OSError (ENOSPC)
        sf.write(buffer, mixed, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        (out_dir / f"{job['utterance_id']}.wav").write_bytes(buffer.getvalue())
    return len(jobs)


def _noise_mixer(
    job: dict[str, object], recordings: dict[str, np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """Mixes the job's noise (generated or a recording's loop) into a clip at its SNR."""
    kind = str(job["noise_type"])

    def add_noise(speech: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(int(job["noise_seed"]))  # type: ignore[call-overload]
        duration = len(speech) / SAMPLE_RATE
        if kind.startswith("rec:"):
            noise = noise_from_recording(recordings[kind[4:]], duration, SAMPLE_RATE, rng)
        else:
            noise = car_noise(kind, duration, SAMPLE_RATE, rng)
        return mix_at_snr(speech, noise, float(job["snr_db"]))  # type: ignore[arg-type]

    return add_noise


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def augmentation_version(
    dataset_version: str, policy: AugmentationPolicy, recordings: list[str]
) -> str:
    """The augmented version: a hash of its inputs (dataset version, policy, recordings)."""
    key = json.dumps(
        {
            "dataset": dataset_version,
            "policy": policy.model_dump(mode="json"),
            "recordings": sorted(recordings),
        },
        sort_keys=True,
    )
    return "aug-" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class AugmentPlan:
    """An augmented version to write: its staging folder, mixing shards and the rows it holds.

    `staging` is None when the version is already stored (nothing to mix).
    """

    version: str
    final: Path
    staging: Path | None
    dataset_version: str
    recordings: list[str]
    rows: DataFrame[AugmentedManifest]  # every row of the version, checked before any mixing
    shards: list[list[dict[str, object]]] = field(default_factory=list)

    @property
    def noisy_dir(self) -> Path:
        return (self.staging or self.final) / "noisy"


@task(name="plan-augmentation")
@pa.check_types(lazy=True)
def plan_augmented_version(
    manifest: DataFrame[Manifest],
    dataset_dir: Path,
    dataset_version: str,
    augmented_root: Path,
    policy: AugmentationPolicy,
    n_shards: int,
) -> AugmentPlan:
    """Name the augmented version; unless stored, stage the clean clips and plan noisy copies."""
    recordings = (
        sorted(load_noise_recordings(policy.noise_dir, SAMPLE_RATE)) if policy.noise_dir else []
    )
    version = augmentation_version(dataset_version, policy, recordings)
    final = augmented_root / version
    if (final / "manifest.csv").is_file():
        stored = load_augmented(final)
        return AugmentPlan(version, final, None, dataset_version, recordings, stored)
    kinds, probs = noise_menu(policy, recordings)
    plan = plan_augmentation(manifest, policy, kinds, probs)
    augmented_root.mkdir(parents=True, exist_ok=True)
    staging = augmented_root / f".staging-{uuid.uuid4().hex[:8]}"
    (staging / "audio").mkdir(parents=True)
    (staging / "noisy").mkdir()
    for path in manifest["audio_path"]:
        _link_or_copy(dataset_dir / path, staging / path)
    clean = manifest.assign(
        parent_id=manifest["utterance_id"], condition="clean", noise_type="none", snr_db=np.nan
    )
    clean = clean.assign(acoustics="none")
    noisy = manifest.set_index("utterance_id").loc[plan["parent_id"]].reset_index()
    noisy = noisy.assign(
        parent_id=plan["parent_id"].to_numpy(),
        utterance_id=(plan["parent_id"] + plan["condition"].map(COPY_SUFFIX)).to_numpy(),
        condition=plan["condition"].to_numpy(),
        noise_type=plan["noise_type"].to_numpy(),
        snr_db=plan["snr_db"].to_numpy(),
        # a speed-perturbed copy lasts 1/speed as long
        duration_s=(noisy["duration_s"].to_numpy() / plan["speed"].to_numpy()).round(4),
        acoustics=[describe_chain(c) for c in plan[list(PLAIN_CHAIN)].to_dict("records")],
    )
    jobs: list[dict[str, object]] = [
        {**job, "utterance_id": uid, "audio_path": ap}
        for job, uid, ap in zip(
            plan.drop(columns="parent_id").to_dict("records"),
            noisy["utterance_id"],
            noisy["audio_path"],
            strict=True,
        )
    ]
    noisy["audio_path"] = "noisy/" + noisy["utterance_id"] + ".wav"
    rows = checked_augmented(pd.concat([clean, noisy], ignore_index=True)[AUGMENTED_COLUMNS])
    cut = shards(jobs, max(1, n_shards))
    return AugmentPlan(version, final, staging, dataset_version, recordings, rows, cut)


@task(name="publish-augmented-version")
def publish_augmented_version(plan: AugmentPlan, policy: AugmentationPolicy) -> AugmentResult:
    """Write the augmented manifest beside the mixed clips and publish the version."""
    noisy_rows = int((plan.rows["condition"] != "clean").sum())
    if plan.staging is None:
        return AugmentResult(plan.version, plan.final, False, len(plan.rows), noisy_rows)
    staging = plan.staging
    try:
        noisy_paths = plan.rows.loc[plan.rows["condition"] != "clean", "audio_path"]
        missing = [p for p in noisy_paths if not (staging / p).is_file()]
        if missing:
            raise RuntimeError(f"{len(missing)} noisy clips were not mixed (e.g. {missing[0]})")
        out = plan.rows
        out.sort_values("utterance_id").to_csv(
            staging / "manifest.csv", index=False, float_format="%.4f"
        )
        (staging / "augmentation.json").write_text(
            json.dumps(
                {
                    "augmented_version": plan.version,
                    "dataset_version": plan.dataset_version,
                    "policy": policy.model_dump(mode="json"),
                    "recordings": plan.recordings,
                    "rows": len(out),
                    "noisy_rows": noisy_rows,
                },
                indent=2,
                sort_keys=True,
            )
        )
        created = publish_dir(staging, plan.final)
        return AugmentResult(plan.version, plan.final, created, len(out), noisy_rows)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@task(name="discard-augmentation-staging")
def discard_augmentation_staging(plan: AugmentPlan) -> None:
    """Remove a plan's staging folder (after a failed shard); a no-op once published."""
    if plan.staging is not None and plan.staging.exists():
        shutil.rmtree(plan.staging, ignore_errors=True)


@pa.check_types(lazy=True)
def checked_augmented(rows: pd.DataFrame) -> DataFrame[AugmentedManifest]:
    """The augmented rows, through the AugmentedManifest contract."""
    return rows


@pa.check_types(lazy=True)
def load_augmented(directory: Path) -> DataFrame[AugmentedManifest]:
    """Read an augmented manifest back through its contract."""
    path = directory / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no augmented dataset at {directory} (missing manifest.csv)")
    rows = pd.read_csv(
        path,
        keep_default_na=False,
        na_values={"snr_db": [""]},
        dtype={
            c: str
            for c in AUGMENTED_COLUMNS
            if c not in ("duration_s", "sample_rate", "rms_dbfs", "snr_db_estimate", "snr_db")
        },
    )
    if "acoustics" not in rows.columns:  # a version stored before the acoustic chains
        rows.insert(len(rows.columns), "acoustics", "none")
    return rows


@task(name="publish-augmentation-report")
def publish_augmentation_report(result: AugmentResult, policy: AugmentationPolicy) -> Path:
    """The noise spectra and the SNR histogram as a picture, with counts, in the Prefect UI."""
    df = load_augmented(result.directory)
    car = df[df["condition"] == "car"]
    rng = np.random.default_rng(policy.seed)
    examples = {k: car_noise(k, 4.0, SAMPLE_RATE, rng) for k in policy.noise_types}
    png = plot_noise_summary(
        examples,
        SAMPLE_RATE,
        car["snr_db"].astype(float).tolist(),
        result.directory / "noise_summary.png",
    )
    counts = car.groupby(["split", "noise_type"]).size().unstack(fill_value=0)
    copies = df[df["condition"] != "clean"]
    steps = copies["acoustics"].str.findall(r"\b(speed|rt60|device|agc|codec)\b").rename("step")
    chain_counts = (
        copies[["split"]].join(steps.explode()).dropna().groupby(["split", "step"]).size()
    ).unstack(fill_value=0)
    telephone = df[df["condition"] == "telephone"].groupby("split").size()
    md = "\n".join(
        [
            f"# Augmentation `{result.version}`: car noise and acoustics",
            "",
            f"- rows: {result.rows} ({result.noisy_rows} noisy copies)"
            + ("" if result.created else " — already stored, reused unchanged"),
            f"- training SNR range: {policy.snr_db_min:g} to {policy.snr_db_max:g} dB, "
            f"augmented share {policy.augmented_share:.0%}; dev/test in-car copies at "
            f"{policy.test_snr_db_min:g} to {policy.test_snr_db_max:g} dB",
            "",
            "## Noisy copies per split and noise type",
            "",
            markdown_table(counts, index=True),
            "",
            "## Acoustic chains (copies with each step; dev/test in-car copies stay plain)",
            "",
            f"- telephone copies per split: {telephone.to_dict()}; speed factors "
            f"{policy.speed_factors}, rooms of RT60 {policy.rt60_min:g}-{policy.rt60_max:g} s",
            "",
            markdown_table(chain_counts, index=True) if len(chain_counts) else "(none)",
            "",
            png_markdown(png, "noise spectra and SNR histogram"),
        ]
    )
    publish_markdown("augmentation-summary", md, "Car-noise augmentation")
    return png


def augmentation_info(directory: Path) -> dict[str, object]:
    """What an augmented version was made from (its augmentation.json)."""
    return json.loads((directory / "augmentation.json").read_text())
