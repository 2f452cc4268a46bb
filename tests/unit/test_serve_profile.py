"""The serving benchmark's profile: which part of the server a sampled stack is in, and how
each thread's CPU is split over its samples (bench/serve_profile.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.serve_profile import PROFILE_CATEGORIES, _read_samples, attribute_cpu, classify_stack

SITE = "/venv/lib/python3.11/site-packages"
STDLIB = "/usr/lib/python3.11"
LOOP = [
    f"Server.run ({SITE}/uvicorn/server.py:86)",
    f"Runner.run ({STDLIB}/asyncio/runners.py:118)",
]
GATE = [*LOOP, "UploadGate.__call__ (/repo/deployments/admission.py:151)"]
ENDPOINT = [
    *GATE,
    f"Route.handle ({SITE}/starlette/routing.py:288)",
    f"ServiceAppFactory.api_endpoint ({SITE}/_bentoml_impl/server/app.py:700)",
]
HANDLER = [*ENDPOINT, "VoiceSearchASR._transcribe (/repo/deployments/service.py:230)"]
MODEL_THREAD = [
    f"Thread.run ({STDLIB}/threading.py:982)",
    "Batcher._run (/repo/deployments/batcher.py:230)",
    "Batcher._run_batch (/repo/deployments/batcher.py:280)",
    "Recognizer.transcribe (/repo/models/recognizer.py:130)",
]
LOG_THREAD = [
    f"Thread.run ({STDLIB}/threading.py:982)",
    "LogWriter._run (/repo/deployments/pipeline.py:160)",
    "log_answers (/repo/deployments/pipeline.py:100)",
]


@pytest.mark.parametrize(
    ("frames", "category"),
    [
        # the innermost named frame decides; numpy, torch and threading count for their caller
        ([*MODEL_THREAD, f"GRU.forward ({SITE}/torch/nn/modules/rnn.py:1100)"], "model_forward"),
        (
            [*MODEL_THREAD, "BeamDecoder.decode (/repo/models/decoder.py:298)"],
            "ctc_beam_decoding",
        ),
        (
            [*MODEL_THREAD[:3], f"Future.set_result ({STDLIB}/concurrent/futures/_base.py:1)"],
            "batcher",
        ),
        (
            [*MODEL_THREAD[:2], f"Condition.wait ({STDLIB}/threading.py:320)"],
            "batcher",
        ),
        (
            [
                *LOG_THREAD,
                "compute_audio_features (/repo/models/audio.py:280)",
                "_power_spectrum (/repo/models/audio.py:270)",
                f"rfft ({SITE}/numpy/fft/_pocketfft.py:400)",
            ],
            "audio_features",
        ),
        (
            [*LOG_THREAD, f"Connection.execute ({SITE}/sqlalchemy/engine/base.py:1400)"],
            "prediction_log",
        ),
        # asyncio's future callbacks run for the thread that resolves the future
        (
            [
                *LOG_THREAD[:2],
                f"_chain_future.<locals>._call_set_state ({STDLIB}/asyncio/futures.py:403)",
            ],
            "prediction_log",
        ),
        (
            [
                *HANDLER,
                "decode_upload (/repo/deployments/pipeline.py:178)",
                "decode_audio (/repo/models/audio.py:200)",
                f"SoundFile.read ({SITE}/soundfile.py:800)",
            ],
            "upload_decode",
        ),
        ([*HANDLER, "parse_client (/repo/deployments/api_types.py:40)"], "handler"),
        (
            [
                *ENDPOINT,
                f"MultipartSerde.parse_request ({SITE}/_bentoml_impl/serde.py:200)",
                f"BaseModel.model_validate ({SITE}/pydantic/main.py:600)",
            ],
            "multipart_parsing",
        ),
        (
            [
                *ENDPOINT,
                f"FileSchema.decode ({SITE}/_bentoml_sdk/validators.py:120)",
                f"NamedTemporaryFile ({STDLIB}/tempfile.py:560)",
            ],
            "multipart_parsing",
        ),
        (
            [*ENDPOINT, f"IterableResponse.__call__ ({SITE}/_bentoml_sdk/io_models.py:90)"],
            "json_response",
        ),
        ([*HANDLER, "ServiceMetrics.answered (/repo/deployments/metrics.py:50)"], "metrics"),
        (
            [*ENDPOINT, f"MetricWrapperBase.labels ({SITE}/prometheus_client/metrics.py:190)"],
            "metrics",
        ),
        (GATE, "our_middlewares"),
        ([*ENDPOINT, f"StreamHandler.emit ({STDLIB}/logging/__init__.py:1100)"], "logging"),
        (
            [*LOOP, f"OpenTelemetryMiddleware.__call__ ({SITE}/opentelemetry/asgi.py:1)"],
            "bentoml_http_stack",
        ),
        (LOOP, "uvicorn_event_loop"),
        ([f"<module> ({STDLIB}/runpy.py:88)"], "other"),
        ([], "other"),
    ],
)
def test_a_sampled_stack_is_counted_where_its_innermost_named_frame_is(
    frames: list[str], category: str
) -> None:
    assert category in PROFILE_CATEGORIES
    assert classify_stack(frames) == category


def test_each_threads_cpu_is_split_over_its_samples_and_adds_up() -> None:
    samples = {
        11: Counter({"model_forward": 3, "ctc_beam_decoding": 1}),
        12: Counter({"audio_features": 1, "prediction_log": 1}),
    }
    split = attribute_cpu(samples, {11: 8.0, 12: 2.0, 13: 0.5})

    assert split == {
        "model_forward": 6.0,
        "ctc_beam_decoding": 2.0,
        "audio_features": 1.0,
        "prediction_log": 1.0,
        "unsampled_threads": 0.5,  # CPU of a thread py-spy never saw (no Python frames)
    }
    assert sum(split.values()) == pytest.approx(10.5)


def test_py_spy_raw_output_is_read_by_thread(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    worker = 'process 7:"python -m _bentoml_impl.worker.service x"'
    raw.write_text(
        f'process 5:"python -m bentoml serve x";{worker};thread (71): asr-model;'
        f"{';'.join(MODEL_THREAD)} 40\n"
        f'process 5:"python -m bentoml serve x";{worker};thread (72): prediction-log;'
        f"{';'.join(LOG_THREAD)};compute_audio_features (/repo/models/audio.py:280) 9\n"
        f'process 5:"python -m bentoml serve x";{worker};thread (71): asr-model;'
        f"{';'.join(MODEL_THREAD[:3])} 2\n"
        "garbage line without a count\n"
    )
    samples, names = _read_samples(raw)

    assert names == {71: "worker asr-model", 72: "worker prediction-log"}
    assert samples == {
        71: Counter({"model_forward": 40, "batcher": 2}),
        72: Counter({"audio_features": 9}),
    }
