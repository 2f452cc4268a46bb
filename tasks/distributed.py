"""Training on several processes: torch DDP launched by `torchrun` as the flow's training step
(`training.processes` > 1; gloo on CPU, NCCL on GPU).

The task writes the job (cache, ids, budget) to `run_dir/ddp-job.json` and runs
`python -m torch.distributed.run --standalone --nproc-per-node N -m tasks.distributed JOB`.
Each rank runs the same loop as the one-process task (tasks.training.train_loop) on its share
of the batches; rank 0 evaluates, writes the checkpoints and `ddp-result.json`; every rank
writes the digest of its final weights to `ddp-rank<r>.json`, and the task refuses a job whose
ranks ended with different weights. MLflow logging stays in the flow, from rank 0's result.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from prefect import task

from data_contracts.scoping import TrainingBudget
from models.ctc import AcousticModelConfig
from tasks.training import TrainResult

REPO = Path(__file__).resolve().parents[1]
JOB, RESULT = "ddp-job.json", "ddp-result.json"


def torchrun_command(processes: int, job: Path) -> list[str]:
    """torchrun on this machine (a free rendezvous port), running this module's main."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={processes}", "-m", "tasks.distributed", str(job)]  # fmt: skip


@task(name="train-acoustic-model-ddp")
def train_with_torchrun(
    cache_path: Path,
    train_ids: Sequence[str],
    dev_ids: Sequence[str],
    run_dir: Path,
    budget: TrainingBudget,
    progress: bool = True,
    resume: bool = True,
    init_from: Path | None = None,
) -> TrainResult:
    """`train_acoustic_model` as a DDP job of `budget.processes` ranks under torchrun."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [run_dir / RESULT, *run_dir.glob("ddp-rank*.json")]:
        old.unlink(missing_ok=True)
    job = run_dir / JOB
    job.write_text(
        json.dumps(
            {
                "cache": str(cache_path), "train_ids": list(train_ids),
                "dev_ids": list(dev_ids), "run_dir": str(run_dir),
                "budget": budget.model_dump(mode="json"), "progress": progress,
                "resume": resume, "init_from": str(init_from) if init_from else None,
            }
        )
    )  # fmt: skip
    log = run_dir / "ddp.log"
    with log.open("w") as out:
        done = subprocess.run(
            torchrun_command(budget.processes, job), cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode != 0 or not (run_dir / RESULT).is_file():
        tail = log.read_text()[-3000:]
        raise RuntimeError(
            f"torchrun with {budget.processes} processes failed (exit {done.returncode}); "
            f"its log is {log}:\n{tail}"
        )
    digests = rank_digests(run_dir)
    if len(digests) != budget.processes or len(set(digests.values())) != 1:
        raise RuntimeError(f"the DDP ranks ended with different weights: {digests} ({log})")
    return read_result(run_dir / RESULT)


def rank_digests(run_dir: Path) -> dict[int, str]:
    """Each rank's digest of its final weights."""
    found = [json.loads(p.read_text()) for p in sorted(run_dir.glob("ddp-rank*.json"))]
    return {int(r["rank"]): str(r["weights_sha256"]) for r in found}


def write_result(result: TrainResult, path: Path) -> None:
    fields = dataclasses.asdict(result)
    fields["checkpoint"], fields["config"] = str(result.checkpoint), result.config.to_dict()
    path.write_text(json.dumps(fields))


def read_result(path: Path) -> TrainResult:
    fields = json.loads(path.read_text())
    fields["checkpoint"] = Path(fields["checkpoint"])
    fields["config"] = AcousticModelConfig.from_dict(fields["config"])
    return TrainResult(**fields)


def main(job_path: Path) -> None:
    """One rank of the job torchrun started."""
    from models.distributed import join_process_group, leave_process_group
    from tasks.training import train_loop

    job = json.loads(job_path.read_text())
    budget = TrainingBudget.model_validate(job["budget"])
    ranks = join_process_group(budget.device)
    run_dir = Path(job["run_dir"])
    try:
        result = train_loop(
            Path(job["cache"]), job["train_ids"], job["dev_ids"], run_dir, budget,
            job["progress"], job["resume"],
            Path(job["init_from"]) if job["init_from"] else None, ranks,
        )  # fmt: skip
        digest = {"rank": ranks.rank, "weights_sha256": result.weights_sha256}
        (run_dir / f"ddp-rank{ranks.rank}.json").write_text(json.dumps(digest))
        if ranks.main:
            write_result(result, run_dir / RESULT)
    finally:
        leave_process_group(ranks)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
