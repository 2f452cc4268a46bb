"""Simulation: production traffic as a phone would send it, real HTTP requests to the served
endpoint in scenarios (the `simulate` command, the story and the serve benchmark's load).

The simulator speaks queries with voices the model never heard in training, processes them
the way ingestion does (trim, loudness), optionally mixes car noise, and posts them to
`POST /transcribe`. It knows the true transcript and keeps it on its own side, in a ledger
(JSONL keyed by the `request_id` the service answers) that the simulated labeller
(tasks/simulated_labeller.py) reads. It drives the system only through what a phone has:
audio, consent and client metadata; production code never sees a true transcript.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from prefect import task

from data_contracts.scoping import Scope
from models.audio import normalise_loudness, trim_silence
from models.features import SAMPLE_RATE
from tasks.corpus import generate_queries
from tasks.noise import NOISE_TYPES, car_noise, mix_at_snr
from tasks.synthesis import Voice, is_catalogue_voice, list_voices, render_utterance, voice_from_id
from tasks.text import normalise_transcript

DEFAULT_VOICE_SEED = 13  # the synthetic corpus's default seed (SyntheticCorpus.seed)


ScenarioName = Literal["stable", "new-names", "in-car", "mixed"]


@dataclass(frozen=True)
class Scenario:
    """What production looks like: which entities people ask about, and how often from a car."""

    name: str
    era_weights: dict[str, float]
    car_share: float
    snr_db: tuple[float, float]


SCENARIOS: dict[ScenarioName, Scenario] = {
    # stable mirrors the held-out evaluation mix the reference was built from
    "stable": Scenario("stable", {"launch": 1.0}, 0.5, (0.0, 20.0)),
    "new-names": Scenario("new-names", {"new": 1.0}, 0.5, (0.0, 20.0)),
    "in-car": Scenario("in-car", {"launch": 1.0}, 1.0, (-5.0, 5.0)),
    "mixed": Scenario("mixed", {"launch": 0.3, "new": 0.7}, 0.9, (-5.0, 10.0)),
}


@dataclass(frozen=True)
class Clip:
    wav_bytes: bytes
    reference: str
    era: str
    condition: str


@dataclass
class SimulationResult:
    scenario: str
    sent: int = 0
    ok: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    hypotheses: list[str] = field(default_factory=list)
    eras: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Counts and latency percentiles (ms)."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "scenario": self.scenario,
            "sent": self.sent,
            "ok": self.ok,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)),
            "model_versions": sorted(set(self.model_versions)),
        }


def make_clips(
    scenario: Scenario,
    count: int,
    voices: Sequence[Voice],
    seed: int,
    loudness_dbfs: float = -23.0,
    names: Sequence[str] | None = None,
) -> list[Clip]:
    """Render `count` queries of a scenario as WAV bytes with their true transcripts; with
    `names`, those are the new-era people (an operator's own, `--names FILE`)."""
    if not voices:
        raise ValueError("expected at least one voice to speak the traffic")
    from tasks.simulated_queries import tables_with_new_names

    tables = tables_with_new_names(names) if names else None
    rng = np.random.default_rng(seed)
    clips = []
    for i, query in enumerate(generate_queries(count, seed, scenario.era_weights, tables)):
        voice = voices[int(rng.integers(len(voices)))]
        spoken = normalise_transcript(query.text, drop_fillers=())
        audio = render_utterance(spoken, voice, SAMPLE_RATE, rng)
        audio = normalise_loudness(trim_silence(audio, SAMPLE_RATE, 40.0, 150.0), loudness_dbfs)
        condition = "car" if rng.random() < scenario.car_share else "clean"
        if condition == "car":
            kind = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
            noise = car_noise(
                kind,
                len(audio) / SAMPLE_RATE,
                SAMPLE_RATE,
                np.random.default_rng(seed * 100_003 + i),
            )
            audio = mix_at_snr(audio, noise, float(rng.uniform(*scenario.snr_db)))
        buf = io.BytesIO()
        sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        clips.append(Clip(buf.getvalue(), normalise_transcript(query.text), query.era, condition))
    return clips


def send(
    url: str,
    clips: Sequence[Clip],
    scenario: str,
    concurrency: int = 4,
    rate_per_s: float | None = None,
    timeout_s: float = 30.0,
    ledger: Path | None = None,
    transport: Any = None,  # an httpx transport (tests: the app in process); None: the network
) -> SimulationResult:
    """POST every clip to `url` (…/transcribe) with consent, as a phone would; with `ledger`,
    append what the simulator knows of each answered request there (see `write_ledger`)."""
    import httpx

    result = SimulationResult(scenario)

    def one(item: tuple[int, Clip]) -> tuple[int, dict[str, object], float, Clip]:
        i, clip = item
        if rate_per_s:
            time.sleep(max(0.0, i / rate_per_s - (time.monotonic() - started)))
        t0 = time.perf_counter()
        try:
            resp = client.post(
                url,
                files={"audio": ("query.wav", clip.wav_bytes, "audio/wav")},
                data={"consent": "true", "client": json.dumps({"app": "simulator/1"})},
            )
            body = (
                resp.json()
                if resp.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            status = resp.status_code
        except httpx.HTTPError as exc:
            status, body = 599, {"error": str(exc)}
        return status, body, (time.perf_counter() - t0) * 1000, clip

    answered: list[tuple[str, Clip]] = []
    started = time.monotonic()
    with (
        httpx.Client(timeout=timeout_s, transport=transport) as client,
        ThreadPoolExecutor(concurrency) as pool,
    ):
        for status, body, ms, clip in pool.map(one, enumerate(clips)):
            result.sent += 1
            result.status_counts[status] = result.status_counts.get(status, 0) + 1
            if status == 200:
                result.ok += 1
                result.latencies_ms.append(ms)
                result.references.append(clip.reference)
                result.hypotheses.append(str(body.get("transcript", "")))
                result.eras.append(clip.era)
                result.model_versions.append(str(body.get("model_version", "")))
                result.request_ids.append(str(body.get("request_id", "")))
                answered.append((str(body.get("request_id", "")), clip))
    if ledger is not None:
        write_ledger(ledger, scenario, answered)
    return result


def write_ledger(ledger: Path, scenario: str, answered: Sequence[tuple[str, Clip]]) -> None:
    """Append one JSON line per answered request: its `request_id`, the true `reference`, the
    `scenario`, `era` and `condition` (the simulator's truth, never sent to the service)."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with ledger.open("a", encoding="utf-8") as f:
        for request_id, clip in answered:
            if request_id:
                line = {
                    "request_id": request_id,
                    "reference": clip.reference,
                    "scenario": scenario,
                    "era": clip.era,
                    "condition": clip.condition,
                }
                f.write(json.dumps(line) + "\n")


def read_ledger(ledger: Path) -> dict[str, dict[str, str]]:
    """The ledger's lines by request id (a missing ledger is empty)."""
    if not ledger.is_file():
        return {}
    rows = (json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines() if line)
    return {str(r["request_id"]): r for r in rows}


def production_voices(datasets_dir: Path, seed: int) -> list[Voice]:
    """Speakers for simulated traffic: the held-out (test) voices of the newest dataset version.

    Production users are people the model never heard, and the drift reference was built on
    held-out voices, so stable traffic must come from them too.
    """
    manifests = sorted(datasets_dir.glob("ds-*/manifest.csv"), key=lambda p: p.stat().st_mtime)
    fallback = list_voices(seed=seed, engines=("espeak",))[-12:]
    if not manifests:
        return fallback
    import pandas as pd

    manifest = pd.read_csv(manifests[-1], usecols=["voice", "split"])
    # the dataset version fixes the held-out voices, whatever engines are installed now
    held = sorted(set(manifest.loc[manifest["split"] == "test", "voice"]))
    return [voice_from_id(v, seed) for v in held if is_catalogue_voice(v)] or fallback


def voice_seed(scope: Scope) -> int:
    """The seed of the scope's synthetic corpus (its voices), or the default one."""
    synthetic = next((s.synthetic for s in scope.sources if s.synthetic), None)
    return synthetic.seed if synthetic else DEFAULT_VOICE_SEED


def service_base_url(scope: Scope) -> str:
    """The base URL of the scope's service: http://<serving.host>:<serving.port>."""
    return f"http://{scope.serving.host}:{scope.serving.port}"


def endpoint_url(scope: Scope) -> str:
    """The scope's speech endpoint (POST): <service>/transcribe."""
    return service_base_url(scope) + "/transcribe"


@task(name="traffic-voices")
def traffic_voices(scope: Scope, limit: int | None = None) -> list[Voice]:
    """The held-out voices simulated traffic is spoken by (at most `limit`)."""
    voices = production_voices(scope.state.path("datasets_dir"), voice_seed(scope))
    return voices[:limit] if limit is not None else voices


@task(name="render-traffic")
def render_traffic(
    scenario: ScenarioName,
    count: int,
    voices: list[Voice],
    seed: int,
    names: list[str] | None = None,
) -> list[Clip]:
    """`count` spoken queries of the named scenario, as WAV bytes with true transcripts
    (`names`: the new-era people, instead of the corpus's)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"expected a scenario among {sorted(SCENARIOS)}, got {scenario!r}")
    return make_clips(SCENARIOS[scenario], count, voices, seed, names=names)


@task(name="send-traffic")
def send_traffic(
    url: str,
    clips: list[Clip],
    scenario: str,
    concurrency: int = 4,
    rate_per_s: float | None = None,
    ledger: Path | None = None,
) -> SimulationResult:
    """POST the clips to the endpoint as phones would; what came back. With `ledger`, the
    simulator's truth about each answered request is appended there (JSONL by request_id)."""
    return send(url, clips, scenario, concurrency=concurrency, rate_per_s=rate_per_s, ledger=ledger)
