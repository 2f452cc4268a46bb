"""The scoping config: what the project is for, what "good" means, where state lives.

`scope.yaml` is loaded into `Scope` and handed to every flow as its parameter, so Prefect
validates it and the UI shows its schema. Every path is relative to `state.workspace` unless
absolute; nothing else in the project invents a location.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_contracts.loop_scope import HotWordsScope, LabellingScope, MonitoringScope
from data_contracts.state import StateLocations
from models.audio import SAMPLE_RATE

MIN_CORPUS_UTTERANCES = 4  # the smallest synthetic corpus (a retrain's re-spoken texts too)

SourceKind = Literal["synthetic", "nemo", "commonvoice", "csv"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectScope(_Strict):
    name: str = "voicecycle"
    task: str = "Transcribe short spoken voice-search queries (English) from a mobile app"
    users: str = "Drivers and passengers using voice search on their phones, often in a car"


class Targets(_Strict):
    """Success metrics, measured on held-out voices with the decoder that serves."""

    wer_clean: float = Field(0.15, gt=0, le=1)
    wer_car: float = Field(0.20, gt=0, le=1)
    cer_clean: float = Field(0.08, gt=0, le=1)
    cer_car: float = Field(0.12, gt=0, le=1)
    p95_latency_ms: float = Field(100.0, gt=0)
    min_throughput_rps: float = Field(10.0, gt=0)


class AudioScope(_Strict):
    # the recogniser's input rate (models.audio.SAMPLE_RATE); named here so a scope that
    # asks for another rate fails at validation, not in the middle of training
    sample_rate: int = SAMPLE_RATE
    channels: Literal[1] = 1
    min_duration_s: float = Field(0.3, gt=0)
    max_duration_s: float = Field(12.0, gt=0)
    max_upload_bytes: int = Field(4_000_000, gt=0)

    @field_validator("sample_rate")
    @classmethod
    def _recogniser_rate(cls, rate: int) -> int:
        if rate != SAMPLE_RATE:
            raise ValueError(
                f"the recogniser takes {SAMPLE_RATE} Hz audio (models.audio.SAMPLE_RATE); "
                f"inputs at other rates are resampled on the way in, so leave this at {SAMPLE_RATE}"
            )
        return rate

    @model_validator(mode="after")
    def _durations_ordered(self) -> AudioScope:
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must be below "
                f"max_duration_s ({self.max_duration_s})"
            )
        return self


class SyntheticCorpus(_Strict):
    """The embedded default data source: synthesised voice-search queries."""

    # The model is data-bound (WER 0.003 on its training voices against 0.083 held out), and
    # espeak speaks about 100x real time, so more queries cost little beside the fixed 9
    # training minutes (bench train from a fresh clone, held-out voices: 2,400 -> 3,600 ->
    # 4,800 gave WER clean 0.046 / 0.036 / 0.027, in-car 0.061 / 0.044 / 0.049, never-heard
    # engine clean 0.237 / 0.190 / 0.160, in-car 0.290 / 0.301 / 0.218, telephone 0.067 /
    # 0.051 / 0.051, general English 0.794 / 0.797 / 0.810; cycle 751 / 822 / 775 s)
    n_utterances: int = Field(4800, ge=MIN_CORPUS_UTTERANCES)
    seed: int = 13
    n_voices: int | None = Field(None, ge=2)
    era_weights: dict[str, float] = {"launch": 1.0}
    # Speak these transcripts (one per line) instead of generated queries: the retrain flow
    # re-speaks labelled production queries that bring words the champion has never seen.
    texts_file: Path | None = None
    # Replace the packaged query templates / entity lists (tasks/corpus_data/*.yaml, same shape)
    templates_file: Path | None = None
    entities_file: Path | None = None
    # The speech engines of the voice catalogue (espeak-ng always; flite and festival from
    # Debian; kokoro, a neural TTS from PyPI). The first corpus of a workspace pins what it
    # resolved to (one printed line per engine not installed); later corpora use the pin
    # (tasks/synthesis/catalogue.py).
    engines: list[Literal["espeak", "flite", "festival", "kokoro"]] = [
        "espeak",
        "flite",
        "festival",
        "kokoro",
    ]
    # At most this many utterances (of n_utterances) by an engine's voices: Kokoro, a neural
    # model, speaks at about 2x real time on one free core (100x for espeak), so it gives a few
    # never-heard test clips, not a share (60 add about 45 s to a cycle on 2 cores)
    engine_utterances: dict[str, int] = {"kokoro": 60}
    # General-English training utterances beside the queries: 3-8 common English words
    # (tasks.corpus.general_training_queries), spoken only by training voices, so the acoustic
    # model learns to spell beyond the templates (the open vocabulary); the word LM never sees
    # them. 0: none.
    general_utterances: int = Field(0, ge=0)

    @field_validator("engine_utterances")
    @classmethod
    def _counts_of_engines(cls, counts: dict[str, int]) -> dict[str, int]:
        if any(e not in ("flite", "festival", "kokoro") or n < 0 for e, n in counts.items()):
            raise ValueError(
                f"expected counts of 0 or more for engines among flite, festival, kokoro "
                f"(espeak is never capped), got {counts}"
            )
        return counts

    @field_validator("engines")
    @classmethod
    def _espeak_first(cls, engines: list[str]) -> list[str]:
        if "espeak" not in engines or len(set(engines)) != len(engines):
            raise ValueError(f"expected distinct engines including 'espeak', got {engines}")
        return engines


class DataSource(_Strict):
    kind: SourceKind
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    path: Path | None = None  # manifest file for nemo/commonvoice/csv
    data_root: Path | None = None  # audio must lie under it; default: the manifest's folder
    synthetic: SyntheticCorpus | None = None

    @model_validator(mode="after")
    def _has_input(self) -> DataSource:
        if self.kind == "synthetic" and self.synthetic is None:
            raise ValueError(f"source {self.name!r}: kind 'synthetic' needs a 'synthetic' block")
        if self.kind != "synthetic" and self.path is None:
            raise ValueError(f"source {self.name!r}: kind {self.kind!r} needs a manifest 'path'")
        return self


class SplitPolicy(_Strict):
    """Split by voice/speaker so that test voices are never heard in training."""

    by: Literal["voice"] = "voice"
    dev_share: float = Field(0.1, gt=0, lt=0.5)
    test_share: float = Field(0.15, gt=0, lt=0.5)
    # whole synthesizers kept for cross-synth testing; kokoro speaks only a few clips (see
    # SyntheticCorpus.engine_utterances): never-heard test clips, not training data
    held_out_synthesizers: list[str] = ["kokoro"]
    seed: int = 7


class DataRules(_Strict):
    """The data definition: how every label and clip is made consistent."""

    lowercase: bool = True
    expand_numbers: bool = True
    drop_fillers: list[str] = ["um", "uh", "er", "erm", "ah", "hmm", "mm"]
    trim_silence_top_db: float = Field(40.0, gt=0)
    keep_silence_ms: float = Field(150.0, ge=0)
    loudness_dbfs: float = Field(-23.0, lt=0)
    max_clipping_share: float = Field(0.01, ge=0, le=1)
    max_silence_share: float = Field(0.9, gt=0, le=1)
    max_quarantine_share: float = Field(0.2, ge=0, le=1)
    max_chars_per_second: float = Field(30.0, gt=0)


class AugmentationPolicy(_Strict):
    """Car-noise augmentation; the error analysis may retune the fields in TUNABLE_KEYS."""

    # what a recommendation (tasks.evaluation.recommendations) may set and a retrain applies
    TUNABLE_KEYS: ClassVar[tuple[str, ...]] = (
        "augmented_share",
        "snr_db_min",
        "snr_db_max",
        "noise_weights",
        "reverb_share",
        "device_share",
        "telephone_share",
        "level_share",
    )

    snr_db_min: float = -5.0
    snr_db_max: float = 20.0
    noise_types: list[str] = ["engine", "road", "wind", "fan", "cabin"]
    noise_weights: dict[str, float] = {}
    augmented_share: float = Field(0.5, ge=0, le=1)
    noise_dir: Path | None = None  # real noise recordings (wav/flac/ogg), used where present
    test_snr_db_min: float = 0.0  # dev/test in-car copies: the range the targets speak of
    test_snr_db_max: float = 20.0
    seed: int = 11
    # Acoustic realism of training copies (tasks/acoustics.py), each drawn per copy: the
    # noisy copies get speed perturbation, a simulated room, a device response and AGC with
    # mild clipping at these shares; `telephone_share` of training clips get a copy of their
    # own through a telephone line (8 kHz, a codec). Dev/test in-car copies stay plain noise.
    speed_factors: list[float] = [0.9, 1.0, 1.1]
    reverb_share: float = Field(0.3, ge=0, le=1)
    rt60_min: float = Field(0.05, ge=0.01, le=2)  # reverb time range of the simulated rooms, s
    rt60_max: float = Field(0.6, ge=0.01, le=2)
    device_share: float = Field(0.3, ge=0, le=1)
    devices: list[str] = ["phone-mic", "small-speaker", "headset"]
    level_share: float = Field(0.2, ge=0, le=1)  # AGC, a gain change and mild clipping
    clip_fraction_max: float = Field(0.01, ge=0, lt=0.2)  # share of samples clipped, at most
    telephone_share: float = Field(0.15, ge=0, le=1)
    codecs: list[str] = ["mulaw", "gsm"]
    # dev/test clips that also get a telephone copy (condition "telephone" in the analysis)
    test_telephone_share: float = Field(0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _snr_ordered(self) -> AugmentationPolicy:
        if self.snr_db_min >= self.snr_db_max:
            raise ValueError(
                f"snr_db_min ({self.snr_db_min}) must be below snr_db_max ({self.snr_db_max})"
            )
        unknown = set(self.noise_weights) - set(self.noise_types)
        if unknown:
            raise ValueError(f"noise_weights names unknown noise types: {sorted(unknown)}")
        if self.rt60_min > self.rt60_max:
            raise ValueError(
                f"rt60_min ({self.rt60_min}) must not exceed rt60_max ({self.rt60_max})"
            )
        bad = [f for f in self.speed_factors if not 0.5 <= f <= 2.0]
        if not self.speed_factors or bad:
            raise ValueError(f"speed_factors must be a non-empty list in [0.5, 2], got {bad}")
        for name, known in (
            ("devices", ("phone-mic", "small-speaker", "headset")),
            ("codecs", ("mulaw", "gsm")),
        ):
            odd = sorted(set(getattr(self, name)) - set(known))
            if odd or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty subset of {list(known)}; got {odd}")
        return self

    def tunable(self) -> dict[str, Any]:
        """The TUNABLE_KEYS part of the policy, with a weight for every noise type."""
        tuned = self.model_dump(include=set(self.TUNABLE_KEYS))
        tuned["noise_weights"] = {k: self.noise_weights.get(k, 1.0) for k in self.noise_types}
        return {k: tuned[k] for k in self.TUNABLE_KEYS}


class TrainingBudget(_Strict):
    profile: Literal["default", "quality", "smoke"] = "default"
    max_minutes: float = Field(9.0, gt=0)
    max_epochs: int = Field(60, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    early_stop_patience: int = Field(4, ge=1)
    eval_every_steps: int = Field(200, ge=1)
    seed: int = 3
    threads: int | None = None
    # Data-parallel training: torch DDP over this many processes launched by torchrun (gloo on
    # CPU, NCCL on GPU), each taking a share of every epoch's batches; 1: one process
    processes: int = Field(1, ge=1, le=64)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: a GPU when torch sees one
    mixed_precision: bool = True  # bf16 autocast on a GPU (a CPU trains in fp32)
    hot_words_file: Path | None = None  # a newsroom's curated name list, one per line
    hot_words: list[str] = []  # extra names for the decoder's lexicon (never test transcripts)
    # with the open vocabulary a narrow beam loses in-domain words to general ones early
    # (launch model of a fresh-clone story, its 741 test clips, bench/decoding.py: 48 beams,
    # 5 tokens a frame WER clean/car/telephone 0.058/0.081/0.084; 128 beams, 8 tokens
    # 0.047/0.070/0.071, general English 0.797 either way). Since the LM is scored in C++
    # (models/decoder.py) a wider beam costs less than 128 did before (a fresh-clone
    # champion's 713 test clips, one thread: 128 beams 0.057/0.081/0.076 in 10.8 ms a clip,
    # 256 beams 0.055/0.073/0.063 in 22.5 ms; 128 with the Python LM took 27.6 ms)
    beam_size: int = Field(256, ge=1)
    beam_size_token: int = Field(8, ge=1)
    # hypotheses this far (log) below the best are dropped: a fresh-clone champion's 713 test
    # clips (256 beams, trigram) gave the same WER clean/car/telephone 0.047/0.061/0.057 at 13
    # as at 15 in 0.56-0.67x the decoding time; 12 moved each by about 0.002
    beam_threshold: float = Field(13.0, gt=0)
    # The word LM's order: 3 also counts the two words before (models/language_model.py; a
    # fresh-clone champion's test clips at 256 beams: WER clean/car/telephone 0.055/0.073/0.063
    # with 2, 0.050/0.068/0.053 with 3, decoding time alike)
    lm_order: Literal[2, 3] = 3
    warm_start: bool = True  # retrains start from the champion's weights
    # The saved recogniser runs its GRU and output layer in int8 (dynamic quantisation, about
    # 3x faster on CPU); the evaluation, the gate and the service all run it that way.
    int8_inference: bool = True
    # An open vocabulary: the decoder also knows this many of the most frequent English words
    # (tasks/lexicon.py, wordfreq's data; 0: only the training transcripts' words), with this
    # share of the LM's unigram mass, so general words score below in-domain ones (launch
    # model, 128 beams: WER clean/car 0.047/0.070 against 0.046/0.069 closed; general English
    # 0.797 against 0.817 closed; at 48 beams weights 0.005-0.05 alike, 0.2 loses 0.002-0.007).
    general_lexicon_words: int = Field(30000, ge=0, le=200000)
    general_lexicon_weight: float = Field(0.05, ge=0, lt=1)


class RegistryScope(_Strict):
    model_name: str = Field("voicecycle-asr", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    experiment: str = "voicecycle"
    slice_tolerance: float = Field(0.05, ge=0, le=1)
    min_slice_n: int = Field(20, ge=1)  # slices smaller than this are too noisy to block
    bootstrap_champion: bool = True  # with no champion at all, the first model serves


class ServingScope(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    max_batch_size: int = Field(8, ge=1)
    max_latency_ms: int = Field(1000, ge=10)
    # Server processes, each with its own model and batcher (Python's GIL holds one process
    # to about one core); null: one per core.
    workers: int | None = Field(None, ge=1, le=64)
    store_audio_with_consent: bool = True
    audio_retention_days: int = Field(30, ge=0)
    reload_poll_seconds: float = Field(10.0, gt=0)
    # how long a batch may wait for more clips while the model thread is busy
    batch_window_ms: float = Field(20.0, ge=0, le=1000)
    # torch intra-op threads of each worker's model thread; null: cores / workers
    torch_threads: int | None = Field(None, ge=1, le=64)
    # how long a prediction-log write waits for another writer's lock (SQLite busy timeout)
    # before the request is answered 503 log_unavailable: short, so a locked log is a quick
    # refusal, long enough for the other workers' own inserts (milliseconds each)
    log_busy_timeout_ms: int = Field(500, ge=1, le=60_000)


class RuntimeScope(_Strict):
    """How work fans out: the Prefect task runner that maps tasks over clips and shards."""

    # processes: a process pool (espeak keeps state per process; deterministic per shard);
    # threads: a thread pool (light I/O-bound work, tests); dask: prefect-dask's
    # DaskTaskRunner on state.dask_scheduler (a LocalCluster of max_workers when null)
    task_runner: Literal["processes", "threads", "dask"] = "processes"
    max_workers: int | None = Field(None, ge=1, le=256)  # null: one per core
    # Prefect process workers on the work pool (`voicecycle team up` starts this many)
    prefect_workers: int = Field(1, ge=1, le=32)
    # service replicas sharing the prediction log and the BentoML store: the first on
    # serving.port, the others on the ports after it (`voicecycle team up` starts them)
    service_replicas: int = Field(1, ge=1, le=16)


class Scope(_Strict):
    """The whole scoping config; the one typed object every flow takes."""

    project: ProjectScope = ProjectScope()
    targets: Targets = Targets()
    audio: AudioScope = AudioScope()
    sources: list[DataSource] = Field(
        default_factory=lambda: [
            DataSource(kind="synthetic", name="synthetic", synthetic=SyntheticCorpus())
        ],
        min_length=1,
    )
    split: SplitPolicy = SplitPolicy()
    data_rules: DataRules = DataRules()
    augmentation: AugmentationPolicy = AugmentationPolicy()
    training: TrainingBudget = TrainingBudget()
    registry: RegistryScope = RegistryScope()
    serving: ServingScope = ServingScope()
    labelling: LabellingScope = LabellingScope()
    hot_words: HotWordsScope = HotWordsScope()
    monitoring: MonitoringScope = MonitoringScope()
    runtime: RuntimeScope = RuntimeScope()
    state: StateLocations = StateLocations()

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: list[DataSource]) -> list[DataSource]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return sources

    def with_workspace(self, workspace: Path) -> Scope:
        """The same scope with its state rooted at another workspace folder."""
        return self.model_copy(
            update={"state": self.state.model_copy(update={"workspace": workspace})}
        )


class ScopeError(ValueError):
    """A scope file that cannot be used; the message names the file, field and reason."""


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: `field.path: reason (got value)`."""
    lines = [f"invalid scope in {source}:"]
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"  - {where}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_scope(path: Path) -> Scope:
    """Read and validate a scope YAML file; raise ScopeError naming the field at fault."""
    if not path.is_file():
        raise ScopeError(f"scope file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScopeError(f"scope file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScopeError(f"scope file {path} must hold a mapping, got {type(raw).__name__}")
    try:
        return Scope.model_validate(raw)
    except ValidationError as exc:
        raise ScopeError(format_validation_error(exc, str(path))) from exc
