"""Scale benchmark: the team profile's engines against the one-laptop defaults, on this machine.

It starts its own team (PostgreSQL, Prefect and MLflow on it, a Dask cluster) and its own
SQLite-backed Prefect server in a scratch workspace on free ports, measures, and stops them:

- 20 concurrent flow runs (separate client processes) against Prefect on SQLite and on Postgres;
- data preparation (probing and normalisation of a synthesised corpus) on the process pool and
  on the Dask cluster, the same flow;
- prediction-log inserts from 8 threads on SQLite and on Postgres;
- training throughput of the default model on one process and as a DDP job of
  DDP_PROCESSES ranks under torchrun (the flow's two training steps, on the same features);
- two `train` deployments started at once on the team's two Prefect workers, no champion
  before: how many of them end as champion (the registry's compare-and-set: must be 1).

Figures it does not measure are null with the reason in `notes` (never a made-up number).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import write_results
from data_contracts.scoping import DataSource, RuntimeScope, Scope, SyntheticCorpus

CONCURRENT_RUNS = 20
PREP_CLIPS = 96
INSERT_THREADS = 8
INSERTS_PER_THREAD = 100
DDP_PROCESSES = 2
TRAIN_MINUTES = 0.5  # each throughput measurement's training budget
REPO = Path(__file__).resolve().parents[1]

# a flow with a few tasks, run by each client process against the server in PREFECT_API_URL
_RUN_ONE = """
from prefect import flow, task

@task
def step(i: int) -> int:
    return i * 2

@flow(name="scale-probe")
def probe() -> int:
    return sum(step.map(range(4)).result())

assert probe() == 12
"""


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def _team_scope(workspace: Path, workers: int) -> Scope:
    prefect, mlflow, dask, pg, sqlite_prefect = _free_ports(5)
    source = DataSource(
        kind="synthetic",
        name="synthetic",
        synthetic=SyntheticCorpus(n_utterances=PREP_CLIPS, seed=5, n_voices=8),
    )
    runtime = RuntimeScope(task_runner="dask", max_workers=workers, prefect_workers=2)
    base = Scope(sources=[source], runtime=runtime)
    # the concurrent retrains train the small model briefly: the contest is the point
    training = base.training.model_copy(
        update={"profile": "smoke", "max_minutes": 0.3, "eval_every_steps": 10}
    )
    state = base.state.model_copy(
        update={
            "workspace": workspace,
            "credentials_file": Path("credentials.yaml"),
            "prediction_log_url": (
                f"postgresql+psycopg://bench:{{SCALE_DB_PASSWORD}}@127.0.0.1:{pg}/predictions"
            ),
            "prefect_api_url": f"http://127.0.0.1:{prefect}/api",
            "mlflow_tracking_uri": f"http://127.0.0.1:{mlflow}",
            "dask_scheduler": f"tcp://127.0.0.1:{dask}",
            "prefect_port": sqlite_prefect,
        }
    )
    return base.model_copy(update={"state": state, "training": training})


def concurrent_runs(api_url: str, n: int) -> int:
    """Start n client processes at once, each running a small flow; how many failed."""
    env = {**os.environ, "PREFECT_API_URL": api_url}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN_ONE],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    failed = 0
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        if proc.returncode != 0:
            failed += 1
            print(f"flow run failed ({proc.returncode}): {err[-300:]}", file=sys.stderr)
    return failed


def insert_rate(url: str) -> float:
    """Prediction-log rows per second from INSERT_THREADS threads, each its own request ids."""
    from data_contracts.prediction_store import PredictionStore

    store = PredictionStore(url)
    before = store.count()

    def write(k: int) -> None:
        for i in range(INSERTS_PER_THREAD):
            store.append(_record(f"bench-{k}-{i}-{uuid.uuid4().hex[:8]}"))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(INSERT_THREADS) as pool:
        list(pool.map(write, range(INSERT_THREADS)))
    seconds = time.perf_counter() - t0
    total = INSERT_THREADS * INSERTS_PER_THREAD
    assert store.count() - before == total, "the prediction log lost rows"
    store.close()
    return total / seconds


def _record(request_id: str) -> dict[str, Any]:
    from data_contracts.prediction_log import AUDIO_FEATURE_COLUMNS

    return {
        "request_id": request_id,
        "ts": datetime.now(UTC),
        "model_version": "1",
        "model_tag": "voicecycle-asr:bench",
        "transcript": "weather in paris",
        "confidence": 0.9,
        "latency_ms": 12.0,
        **dict.fromkeys(AUDIO_FEATURE_COLUMNS, 1.0),
        "n_words": 3,
        "client": "{}",
        "consent": False,
    }


def prep_rate(scope: Scope, manifest: Path) -> tuple[float, str]:
    """Clips per second probed and normalised by the ingest flow's fan-out on scope's runner;
    the dataset version it made."""
    from flows.ingest import probe_and_version
    from tasks.fanout import task_runner

    shutil.rmtree(scope.state.path("datasets_dir"), ignore_errors=True)
    t0 = time.perf_counter()
    result = probe_and_version.with_options(task_runner=task_runner(scope))(scope, [manifest])
    return float(result.total) / (time.perf_counter() - t0), str(result.dataset_version)


def train_rates(scope: Scope, augmented: str, out: Path) -> dict[str, Any]:
    """The default model trained TRAIN_MINUTES on one process, then as a DDP job: utterances
    per second inside the loop, and each step's wall time (torchrun and imports included)."""
    from flows.train import cache_features
    from models.cores import available_cores
    from tasks.augmentation import load_augmented
    from tasks.distributed import train_with_torchrun
    from tasks.fanout import task_runner
    from tasks.training import training_sets

    data_dir = scope.state.path("augmented_dir") / augmented
    cache = cache_features.with_options(task_runner=task_runner(scope))(scope, data_dir, augmented)
    train_ids, dev_ids, _ = training_sets(load_augmented(data_dir))
    budget = scope.training.model_copy(
        update={"profile": "default", "max_minutes": TRAIN_MINUTES, "eval_every_steps": 10**6,
                "max_epochs": 10**4, "device": "cpu"}
    )  # fmt: skip
    # all in fresh processes started the same way (torchrun): one rank with every core's
    # threads, one rank with one thread, DDP_PROCESSES single-threaded ranks
    t0 = time.perf_counter()
    one_budget = budget.model_copy(update={"processes": 1, "threads": available_cores()})
    one = train_with_torchrun.fn(cache, train_ids, dev_ids, out / "one", one_budget, False)
    t1 = time.perf_counter()
    # one thread: on a busy machine a 2-thread process waits at every op's thread barrier
    single = budget.model_copy(update={"processes": 1, "threads": 1})
    one_thread = train_with_torchrun.fn(cache, train_ids, dev_ids, out / "one-1t", single, False)
    ddp_budget = budget.model_copy(update={"processes": DDP_PROCESSES, "threads": None})
    t2 = time.perf_counter()
    ddp = train_with_torchrun.fn(cache, train_ids, dev_ids, out / "ddp", ddp_budget, False)
    t3 = time.perf_counter()
    return {
        "train_utterances": len(train_ids),
        "train_utt_per_s_1proc": round(one.utterances_per_second, 1),
        "train_utt_per_s_1proc_1thread": round(one_thread.utterances_per_second, 1),
        "train_utt_per_s_ddp": round(ddp.utterances_per_second, 1),
        "train_steps_1proc": one.steps,
        "train_steps_1proc_1thread": one_thread.steps,
        "train_steps_ddp": ddp.steps,
        "train_wall_s_1proc": round(t1 - t0, 1),
        "train_wall_s_ddp": round(t3 - t2, 1),
    }


def concurrent_retrains(scope: Scope, augmented: str) -> dict[str, Any]:
    """Two `train` deployments at once on the team's workers; what the registry says after."""
    import mlflow

    from deployments.work_pool import deploy_all, run_deployment_now
    from tasks.registry import CHAMPION, alias_version

    deploy_all(scope)
    params: dict[str, object] = {"augmented_version": augmented}
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_deployment_now("train/train", params, True), [1, 2]))
    mlflow.set_tracking_uri(scope.state.url("mlflow_tracking_uri"))
    client = mlflow.MlflowClient()
    name = scope.registry.model_name
    versions = client.search_model_versions(f"name = '{name}'")
    tags = {str(v.version): dict(v.tags) for v in versions}
    return {
        "concurrent_retrains_states": sorted(state for _, state in runs),
        "concurrent_retrains_versions": len(versions),
        "concurrent_retrains_champions": sum(t.get("promoted") == "true" for t in tags.values()),
        "champion": alias_version(name, CHAMPION),
        "refused": [t["promotion_refused"] for t in tags.values() if "promotion_refused" in t],
    }


def main(scope: Scope, out_dir: Path) -> dict[str, Any]:
    """Start a scratch team, measure, stop it; write bench/results/scale.json."""
    from deployments.local import start_server, stop_server
    from deployments.team import team_down, team_up
    from models.cores import available_cores

    workers = scope.runtime.max_workers or available_cores()
    root = Path(tempfile.mkdtemp(prefix="voicecycle-scale-"))
    root.chmod(0o711)  # PostgreSQL runs as `postgres` when this runs as root
    team = _team_scope(root / "ws", workers)
    sqlite_prefect = team.model_copy(
        update={"state": team.state.model_copy(update={"prefect_api_url": None})}
    )
    notes: dict[str, str] = {}
    try:
        team_up(team, log=True)
        os.environ["PREFECT_API_URL"] = team.state.url("prefect_api_url")
        start_server(sqlite_prefect)
        sqlite_api = f"http://127.0.0.1:{sqlite_prefect.state.prefect_port}/api"
        postgres_failures = concurrent_runs(team.state.url("prefect_api_url"), CONCURRENT_RUNS)
        sqlite_failures = concurrent_runs(sqlite_api, CONCURRENT_RUNS)
        stop_server(sqlite_prefect)
        os.environ["PREFECT_API_URL"] = team.state.url("prefect_api_url")

        from flows.ingest import synthesise_corpus
        from tasks.fanout import task_runner

        processes = team.model_copy(
            update={"runtime": team.runtime.model_copy(update={"task_runner": "processes"})}
        )
        source = team.sources[0]
        manifest = synthesise_corpus.with_options(
            task_runner=task_runner(processes, tasks_start_processes=True)
        )(source, team.state.path("corpus_dir"), workers)
        prep_processes, _ = prep_rate(processes, manifest)
        prep_dask, dataset_version = prep_rate(team, manifest)

        sqlite_log = f"sqlite:///{root / 'ws' / 'bench-predictions.db'}"
        log_sqlite = insert_rate(sqlite_log)
        log_postgres = insert_rate(team.state.url("prediction_log_url"))

        from flows.augment import augment

        augmented = augment(team, dataset_version)
        training = train_rates(team, augmented, root / "train-rates")
        retrains = concurrent_retrains(team, augmented)
    finally:
        team_down(team)
        stop_server(sqlite_prefect)
        shutil.rmtree(root, ignore_errors=True)
    notes["ddp"] = (
        f"the default model (profile default) trained {TRAIN_MINUTES} min on "
        f"{training['train_utterances']} augmented clips, first as one torchrun process with "
        f"{available_cores()} threads, then as {DDP_PROCESSES} DDP ranks (gloo) of "
        f"{available_cores() // DDP_PROCESSES} thread(s) each on the same cores: a rank "
        "computes half the batches, then waits for "
        "the gradient all-reduce of every step; the wall times add torchrun's start and each "
        "rank's imports (train_wall_s_*). Where the time goes: on these 2 cores, shared with "
        "five other engineers' jobs (load 2-30), one process with 2 intra-op threads waits at "
        "every op's thread barrier for both cores at once, so it is several times slower "
        "than one thread (train_utt_per_s_1proc_1thread); DDP's gain here is mostly that, "
        "set against one thread, two ranks add little (they share the same cores and "
        "all-reduce every step)"
    )
    notes["concurrent_retrains"] = (
        "two `train` deployments started at once on the team's two Prefect workers, no "
        "champion before: both gates pass (bootstrap), the registry's compare-and-set (a "
        "Postgres advisory lock) lets one move the alias; the other is registered with "
        f"promoted=false and its reason: {retrains['refused']}"
    )
    notes["replicas"] = (
        "two replicas at concurrency 8 are checked by tests/team/test_team_cycle.py (every "
        "answered request logged once); this benchmark does not start services"
    )
    notes["prep"] = (
        f"{PREP_CLIPS} clips probed and normalised by the ingest flow's fan-out; on "
        f"{available_cores()} cores the Dask workers share the cores with the Prefect server, "
        "Postgres and the flow process"
    )
    figures = {
        "cores": available_cores(),
        "prefect_concurrent_runs": CONCURRENT_RUNS,
        "prefect_sqlite_failures": sqlite_failures,
        "prefect_postgres_failures": postgres_failures,
        "dask_workers": workers,
        "prep_clips_per_s_processes": round(prep_processes, 1),
        "prep_clips_per_s_dask": round(prep_dask, 1),
        "ddp_processes": DDP_PROCESSES,
        **{k: v for k, v in training.items() if k != "train_utterances"},
        "log_inserts_per_s_sqlite": round(log_sqlite, 1),
        "log_inserts_per_s_postgres": round(log_postgres, 1),
        "replicas": None,
        "predictions_lost": None,
        "concurrent_retrains_champions": retrains["concurrent_retrains_champions"],
        "concurrent_retrains_states": retrains["concurrent_retrains_states"],
        "notes": notes,
    }
    write_results(out_dir, "scale", figures)
    return figures
