"""The serving benchmark's ceiling: the CPU a clip of the model and of the beam search, each
timed on its own, and what HTTP is measured against (bench/serve.py)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bench.serve_clips import random_recognizer
from bench.serve_raw import ceiling_figures, in_own_thread, work_cpu_ms


def test_the_ceiling_is_every_core_on_the_model_and_the_beam_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wavs = []
    for _ in range(3):
        buffer = io.BytesIO()
        noise = 0.1 * rng.standard_normal(16000).astype(np.float32)
        sf.write(buffer, noise, 16000, "PCM_16", format="WAV")
        wavs.append(buffer.getvalue())
    folder, _ = random_recognizer(tmp_path / "rec", ["play jazz", "call mom"], int8=True)
    work = work_cpu_ms(folder, wavs, batch_size=2, clips=4)
    assert work["model"] > 0 and work["decode"] > 0

    figures = {"rps_c1": 20.0, "rps_c8": 45.0, "rps_c32": 50.0, "server_cpu_ms_per_req_c8": 40.0}
    out = ceiling_figures({"model": 10.0, "decode": 15.0}, 2, figures, (1, 8, 32))
    assert out["ceiling_rps_all_cores"] == pytest.approx(80.0)  # 2 cores * 1000 / 25 ms
    assert out["http_over_ceiling"] == pytest.approx(50.0 / 80.0, abs=1e-3)  # the best level
    assert out["http_over_ceiling_c8"] == pytest.approx(45.0 / 80.0, abs=1e-3)
    assert out["server_cpu_over_work_c8"] == pytest.approx(40.0 / 25.0)
    assert "http_over_ceiling_c8" not in ceiling_figures(
        {"model": 10.0, "decode": 15.0}, 2, {"rps_c1": 20.0}, (1,)
    )


def test_raw_figures_run_in_a_thread_of_their_own_as_the_server_model_thread() -> None:
    """The beam search's CPU depends on the thread's malloc arena: the figures are measured
    off the main thread, as the server runs them; a failure still reaches the caller."""
    assert in_own_thread(lambda: threading.current_thread().name).startswith("bench-model")
    assert in_own_thread(lambda: threading.current_thread()) is not threading.main_thread()

    def broken() -> None:
        raise ValueError("no model here")

    with pytest.raises(ValueError, match="no model here"):
        in_own_thread(broken)
