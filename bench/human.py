"""Real human speech: the champion on recordings of a person, against a peer on the same clips,
and the same phrases spoken by synthetic voices as a control.

The recordings are the channel-test clips Debian's alsa-utils ships in /usr/share/sounds/alsa
("Front Left", "Rear Center", ... "Side Right": one man's voice, studio quality, 48 kHz),
`Noise.wav` left out. They are evaluation data only: nothing here trains on them, and no corpus
or augmentation reads that folder.

What it does, under a scratch folder (`state.workspace/bench/human`, removed at the end):

1. a CSV manifest of the recordings (transcript from the file name, synthesizer `human`), scored
   by the evaluate flow exactly as `voicecycle evaluate --manifest ... --data-root
   /usr/share/sounds/alsa` scores it: ingestion contracts, the champion as served;
2. the peer (pocketsphinx's bundled en-US model, bench/train.py) on the same recordings,
   decoded to 16 kHz mono by the one upload decoder (models.audio);
3. the control: the same phrases spoken by synthetic voices of every installed engine, scored
   through the same flow, so that "the voice is human" and "the words are new" can be told
   apart;
4. how many of the recordings' words the champion's in-domain lexicon (its training
   transcripts) and its open vocabulary hold.

`human.json` keys: `human_clips`, `wer_human`, `cer_human`, `peer_wer_human`,
`peer_over_ours_human` (above 1: ours is better), `wer_human_phrases_synthetic`,
`wer_human_phrases_by_engine`, `human_words_in_domain_share`, `human_words_in_vocabulary_share`,
`model_version`, and each clip's reference, our hypothesis and the peer's (`clips`).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from bench.report import write_results
from data_contracts.scoping import Scope

HUMAN_DIR = Path("/usr/share/sounds/alsa")  # Debian's alsa-utils
NOT_SPEECH = {"Noise"}
CONTROL_ENGINES = ("espeak", "espeak-klatt", "flite", "festival", "festival-hts", "kokoro")
CONTROL_VOICES_PER_ENGINE = 2
CONTROL_SEED = 77


class NoRecordings(RuntimeError):
    """The human recordings are not on this machine (the message says which package brings
    them)."""


def human_recordings(folder: Path = HUMAN_DIR) -> list[tuple[Path, str]]:
    """(path, transcript) of each spoken clip in the folder: `Front_Left.wav` -> "front left"."""
    clips = sorted(p for p in folder.glob("*.wav") if p.stem not in NOT_SPEECH)
    if not clips:
        raise NoRecordings(
            f"no recordings in {folder}: install Debian's alsa-utils (`make setup` does where "
            "root and apt allow)"
        )
    return [(p, p.stem.replace("_", " ").lower()) for p in clips]


def write_manifest(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    """A CSV manifest (audio_path, transcript, voice, synthesizer) as a user would write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["audio_path", "transcript", "voice", "synthesizer"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return path


def control_clips(
    phrases: Sequence[str], out_dir: Path, voices_per_engine: int = CONTROL_VOICES_PER_ENGINE
) -> list[dict[str, str]]:
    """The phrases spoken by the first voices of every installed engine (16 kHz WAV files);
    manifest rows. An engine that is not installed is left out with one printed line."""
    from models.audio import SAMPLE_RATE
    from tasks.synthesis import check_voice, list_voices, render_utterance

    rng = np.random.default_rng(CONTROL_SEED)
    rows: list[dict[str, str]] = []
    catalogue = list_voices(13)
    for engine in CONTROL_ENGINES:
        voices = [v for v in catalogue if v.synthesizer == engine][:voices_per_engine]
        try:
            for voice in voices:
                check_voice(voice)
        except ValueError as exc:  # check_voice: the engine or voice is not installed
            print(f"control: {engine} left out ({exc})")
            continue
        for v, voice in enumerate(voices):
            for k, phrase in enumerate(phrases):
                audio = render_utterance(phrase, voice, SAMPLE_RATE, rng)
                path = out_dir / f"{engine}-{v}-{k}.wav"  # a valid utterance id
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
                rows.append(
                    {
                        "audio_path": str(path),
                        "transcript": phrase,
                        "voice": voice.voice_id,
                        "synthesizer": engine,
                    }
                )
    return rows


def evaluate_manifest(scope: Scope, manifest: Path, data_root: Path) -> tuple[dict[str, Any], Any]:
    """The evaluate flow's summary and its per-clip predictions (predictions.csv)."""
    import pandas as pd

    from flows.evaluate import evaluate

    summary = evaluate(scope, manifest, "csv", data_root)
    predictions = pd.read_csv(
        Path(summary["report"]).parent / "predictions.csv", dtype=str, keep_default_na=False
    )
    return summary, predictions


def peer_transcripts(paths: Sequence[Path]) -> list[str]:
    """pocketsphinx on each recording, decoded to 16 kHz mono as an upload is."""
    from bench.train import pocketsphinx_transcribe
    from models.audio import decode_audio

    waves = [decode_audio(p.read_bytes(), max_duration_s=60.0).samples for p in paths]
    return pocketsphinx_transcribe(waves)


def word_shares(
    references: Sequence[str], lexicon: set[str], vocabulary: set[str]
) -> dict[str, float]:
    """Shares of the references' words (tokens) the in-domain lexicon and the vocabulary hold."""
    words = [w for ref in references for w in ref.split()]
    return {
        "human_words_in_domain_share": round(sum(w in lexicon for w in words) / len(words), 3),
        "human_words_in_vocabulary_share": round(
            sum(w in vocabulary for w in words) / len(words), 3
        ),
    }


def main(
    scope: Scope,
    out_dir: Path,
    folder: Path = HUMAN_DIR,
    voices_per_engine: int = CONTROL_VOICES_PER_ENGINE,
) -> dict[str, Any]:
    """Measure the champion on the human recordings; write out_dir/human.json, print a table."""
    from bench.decoding import registered
    from tasks.evaluation.metrics import cer, wer
    from tasks.registry import configure_mlflow

    recordings = human_recordings(folder)
    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    scratch = (scope.state.workspace / "bench" / "human").resolve()  # manifests hold full paths
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        version, recognizer = registered(scope, None, scratch / "champion")
        rows = [
            {"audio_path": str(p), "transcript": t, "voice": "alsa-speaker", "synthesizer": "human"}
            for p, t in recordings
        ]
        manifest = write_manifest(scratch / "human.csv", rows)
        summary, predictions = evaluate_manifest(scope, manifest, folder)
        ours = dict(zip(predictions["utterance_id"], predictions["hypothesis"], strict=True))
        refs = [t for _, t in recordings]
        hyps = [ours.get(p.stem, "") for p, _ in recordings]
        peer = peer_transcripts([p for p, _ in recordings])

        phrases = sorted(set(refs))
        control_rows = control_clips(phrases, scratch / "control", voices_per_engine)
        control: dict[str, float] = {}
        control_wer = None
        if control_rows:
            control_manifest = write_manifest(scratch / "control.csv", control_rows)
            control_summary, _ = evaluate_manifest(scope, control_manifest, scratch / "control")
            control_wer = round(float(control_summary["wer"]), 4)
            control = {
                row["value"]: round(float(row["wer"]), 4)
                for row in control_summary["slices"]
                if row["slice"] == "synthesizer"
            }

        ours_wer, peer_wer = wer(refs, hyps), wer(refs, peer)
        figures: dict[str, Any] = {
            "model_version": version,
            "recordings": f"{folder} (alsa-utils), {len(recordings)} clips, one speaker",
            "human_clips": len(recordings),
            "quarantined": int(summary["quarantined"]),
            "wer_human": round(ours_wer, 4),
            "cer_human": round(cer(refs, hyps), 4),
            "wer_human_evaluate": round(float(summary["wer"]), 4),
            "peer": "pocketsphinx 5, bundled en-US model",
            "peer_wer_human": round(peer_wer, 4),
            "peer_cer_human": round(cer(refs, peer), 4),
            "peer_over_ours_human": round(peer_wer / ours_wer, 3) if ours_wer else None,
            "wer_human_phrases_synthetic": control_wer,
            "wer_human_phrases_by_engine": control,
            **word_shares(refs, recognizer.lexicon, recognizer.vocabulary),
            "clips": [
                {"reference": r, "ours": h, "peer": q}
                for r, h, q in zip(refs, hyps, peer, strict=True)
            ],
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _print_table(figures)
    write_results(out_dir, "human", figures)
    return figures


def _print_table(figures: dict[str, Any]) -> None:
    print(f"\nreal human speech: {figures['recordings']}, model version {figures['model_version']}")
    print(f"{'reference':<16} {'ours':<28} peer ({figures['peer']})")
    for clip in figures["clips"]:
        print(f"{clip['reference']:<16} {clip['ours']:<28} {clip['peer']}")
