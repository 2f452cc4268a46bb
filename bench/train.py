"""Training benchmark: corpus to champion on this machine, WER per condition for our model and
for a peer (pocketsphinx's bundled en-US model) on the same held-out audio, hot words on a
new-names set, and the real-time factor on one core.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from data_contracts.scoping import Scope

PEER_CLIPS_PER_CONDITION = 40  # pocketsphinx runs near real time: a sample keeps this short
RTF_CLIPS = 40
NEW_NAMES_CLIPS = 80


def pocketsphinx_transcribe(waves: list[np.ndarray]) -> list[str]:
    """The peer system: pocketsphinx 5 with its bundled en-US acoustic model, LM and lexicon."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    out = []
    for wav in waves:
        pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        out.append(hyp.hypstr.lower() if hyp else "")
    return out


def rtf_one_core(recognizer: Any, waves: list[np.ndarray]) -> float:
    """Processing time over audio time, one clip at a time on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recognizer.transcribe(waves[:2])  # warm up
        t0 = time.perf_counter()
        for wav in waves:
            recognizer.transcribe([wav])
        spent = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return spent / (sum(len(w) for w in waves) / 16000)


def new_names_set(test_voices: set[str], n: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Queries about the later-era names, spoken by held-out voices, processed like ingestion."""
    from tasks.simulation import Scenario, make_clips
    from tasks.synthesis import list_voices

    voices = [v for v in list_voices(seed=13) if v.voice_id in test_voices] or list_voices(13)[:8]
    scenario = Scenario("new-names-clean", {"new": 1.0}, 0.0, (0.0, 0.0))
    clips = make_clips(scenario, n, voices, seed)
    import io

    import soundfile as sf

    waves = [sf.read(io.BytesIO(c.wav_bytes), dtype="float32")[0] for c in clips]
    return waves, [c.reference for c in clips]


def profile_scope(scope: Scope, profile: str, workspace: Path) -> Scope:
    """The scope of a benchmark profile, rooted in its own fresh workspace."""
    training = scope.training
    if profile == "quality":
        training = training.model_copy(
            update={"profile": "quality", "max_minutes": 30.0, "early_stop_patience": 8}
        )
    sources = scope.sources
    return scope.model_copy(update={"training": training, "sources": sources}).with_workspace(
        workspace
    )


def main(scope: Scope, out_dir: Path, profile: str = "default") -> dict[str, Any]:
    """Run the cycle from an empty workspace, then measure the champion against the peer."""
    from deployments.local import configure_environment, start_server

    workspace = scope.state.workspace / "bench" / f"train-{profile}"
    shutil.rmtree(workspace, ignore_errors=True)
    bench_scope = profile_scope(scope, profile, workspace)
    bench_scope = bench_scope.model_copy(
        update={
            "state": bench_scope.state.model_copy(
                update={
                    "prefect_port": scope.state.prefect_port,
                    "prefect_home": (scope.state.path("prefect_home").resolve()),
                }
            )
        }
    )
    configure_environment(bench_scope)
    start_server(bench_scope)

    from flows.augment import augment
    from flows.ingest import ingest
    from flows.train import train
    from models.recognizer import Recognizer
    from tasks.augmentation import load_augmented
    from tasks.corpus import ENTITY_NAMES
    from tasks.evaluation import wer
    from tasks.inference import read_clip
    from tasks.registry import download_recognizer
    from tasks.text import normalise_transcript

    t0 = time.perf_counter()
    dataset_version = ingest(bench_scope)
    augmented_version = augment(bench_scope, dataset_version)
    trained = train(bench_scope, augmented_version)
    cycle_seconds = time.perf_counter() - t0

    data_dir = bench_scope.state.path("augmented_dir") / augmented_version
    manifest = load_augmented(data_dir)
    recognizer = Recognizer.load(
        download_recognizer(
            bench_scope.registry.model_name, str(trained["model_version"]), workspace / "champion"
        )
    )
    test = manifest[manifest["split"] == "test"]
    rng = np.random.default_rng(0)
    peer: dict[str, float] = {}
    ours_on_sample: dict[str, float] = {}
    for cond in ("clean", "car"):
        rows = test[test["condition"] == cond]
        rows = rows.iloc[rng.permutation(len(rows))[:PEER_CLIPS_PER_CONDITION]]
        waves = [read_clip(data_dir / p) for p in rows["audio_path"]]
        refs = list(rows["transcript"])
        peer[cond] = wer(refs, pocketsphinx_transcribe(waves))
        ours_on_sample[cond] = wer(refs, [t.text for t in recognizer.transcribe(waves)])
    rtf_rows = test.iloc[rng.permutation(len(test))[:RTF_CLIPS]]
    rtf = rtf_one_core(recognizer, [read_clip(data_dir / p) for p in rtf_rows["audio_path"]])

    names_waves, names_refs = new_names_set(set(test["voice"]), NEW_NAMES_CLIPS, seed=99)
    newsroom = [normalise_transcript(n) for n in ENTITY_NAMES["new"]]
    wer_names = wer(names_refs, [t.text for t in recognizer.transcribe(names_waves)])
    hot = recognizer.with_hot_words(newsroom)
    wer_names_hot = wer(names_refs, [t.text for t in hot.transcribe(names_waves)])

    prefix = "" if profile == "default" else f"{profile}_"
    cross = trained.get("cross_synth_wer")
    figures = {
        f"{prefix}wer_clean": round(float(trained["wer_clean"]), 4),
        f"{prefix}wer_car": round(float(trained["wer_car"]), 4),
        f"{prefix}cer_clean": round(float(trained["cer_clean"]), 4),
        f"{prefix}cer_car": round(float(trained["cer_car"]), 4),
        f"{prefix}cycle_seconds": round(cycle_seconds, 1),
        f"{prefix}wer_cross_synth": None if cross is None else round(float(cross), 4),
        "peer_wer_clean": round(peer["clean"], 4),
        "peer_wer_car": round(peer["car"], 4),
        "ours_wer_clean_on_peer_sample": round(ours_on_sample["clean"], 4),
        "ours_wer_car_on_peer_sample": round(ours_on_sample["car"], 4),
        "peer_over_ours_clean": round(peer["clean"] / max(ours_on_sample["clean"], 1e-9), 2),
        "peer_over_ours_car": round(peer["car"] / max(ours_on_sample["car"], 1e-9), 2),
        "peer_clips_per_condition": PEER_CLIPS_PER_CONDITION,
        f"{prefix}rtf_one_core": round(rtf, 4),
        f"{prefix}wer_new_names": round(wer_names, 4),
        f"{prefix}wer_new_names_hot_words": round(wer_names_hot, 4),
        f"{prefix}train_utterances_per_second": round(
            float(trained["train_utterances_per_second"]), 1
        ),
        f"{prefix}train_seconds": round(float(trained["train_seconds"]), 1),
        "model_parameters": int(sum(p.numel() for p in recognizer.float_model.parameters())),
        "model_size_mb": round(
            sum(f.stat().st_size for f in (workspace / "champion").rglob("weights.pt")) / 1e6, 2
        ),
        "test_clips": int(len(test)),
        "promoted": bool(trained["promoted"]),
    }
    train_json = out_dir / "train.json"  # one file holds both profiles' keys
    merged = {}
    if train_json.is_file():
        merged = {
            k: v
            for k, v in json.loads(train_json.read_text()).items()
            if k not in ("benchmark", "when", "machine")
        }
    merged.update(figures)
    write_results(out_dir, "train", merged)
    return figures
