"""The training run's learning curve (from its MLflow metric history) and what it says limits
the model: training time, data (voices it never heard), capacity or the decoder.

`voicecycle bench train` adds these keys to train.json (prefixed per profile) and draws
bench/results/train-learning-curves.png with every profile's curve in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CURVE_METRICS = ("dev_wer_greedy", "train_loss", "lr")  # logged every eval_every_steps
STILL_FALLING = 0.05  # greedy dev WER fell this share or more over the last quarter of steps
PROFILES = {"": "default", "quality_": "quality"}


def learning_curve(client: Any, run_id: str) -> dict[str, list[float]]:
    """Steps and each CURVE_METRICS value at them, oldest first (an MlflowClient's history)."""
    history = {
        key: sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        for key in CURVE_METRICS
    }
    by_step = {key: {m.step: m.value for m in points} for key, points in history.items()}
    steps = sorted(by_step["dev_wer_greedy"])
    return {
        "step": steps,
        **{key: [round(by_step[key].get(s, float("nan")), 5) for s in steps] for key in by_step},
    }


def gain_last_quarter(curve: dict[str, list[float]]) -> float | None:
    """The relative fall of greedy dev WER over the last quarter of the steps (None: too few
    points to say)."""
    steps, dev = curve["step"], curve["dev_wer_greedy"]
    if len(steps) < 3:
        return None
    cut = steps[-1] - (steps[-1] - steps[0]) / 4
    earlier = [w for s, w in zip(steps, dev, strict=True) if s <= cut][-1]
    return round((earlier - dev[-1]) / earlier, 4) if earlier > 0 else None


def limits(
    curve: dict[str, list[float]], train_wer: float, dev_wer: float, target_wer: float
) -> list[str]:
    """What limits the model, read from the curve and the final (beam-decoded) WERs."""
    found = []
    gain = gain_last_quarter(curve)
    if gain is not None and gain >= STILL_FALLING:
        found.append(
            f"training time: greedy dev WER still fell {gain:.0%} over the last quarter of "
            f"the steps ({curve['dev_wer_greedy'][-1]:.3f} at step {curve['step'][-1]}); "
            "more steps (a longer budget, a GPU, DDP ranks) pay"
        )
    if train_wer > target_wer:
        found.append(
            f"capacity: WER on its own training clips is {train_wer:.3f}, above the target "
            f"{target_wer:.3f}; a larger model or longer training"
        )
    if dev_wer > 2 * max(train_wer, 1e-3):
        found.append(
            f"data: WER {train_wer:.3f} on the voices it trained on against {dev_wer:.3f} on "
            "held-out voices; more voices and acoustic variety pay more than capacity"
        )
    greedy = curve["dev_wer_greedy"][-1] if curve["dev_wer_greedy"] else None
    if greedy is not None and greedy > 2 * dev_wer:
        found.append(
            f"acoustic model: greedy dev WER {greedy:.3f} against {dev_wer:.3f} with the beam "
            "and LM; the decoder already recovers most of it, the gap is acoustic"
        )
    return found


def curve_figures(
    client: Any, run_id: str, run_metrics: dict[str, Any], target_wer: float, prefix: str
) -> dict[str, Any]:
    """train.json's learning-curve keys for one profile's training run."""
    curve = learning_curve(client, run_id)
    train_wer, dev_wer = float(run_metrics["train_wer"]), float(run_metrics["dev_wer"])
    return {
        f"{prefix}learning_curve": curve,
        f"{prefix}train_wer": round(train_wer, 4),
        f"{prefix}dev_wer": round(dev_wer, 4),
        f"{prefix}dev_wer_greedy_gain_last_quarter": gain_last_quarter(curve),
        f"{prefix}limits": limits(curve, train_wer, dev_wer, target_wer),
    }


def plot_curves(figures: dict[str, Any], path: Path) -> Path | None:
    """Greedy dev WER and train loss by step for every profile in figures (None: no curve)."""
    from matplotlib.figure import Figure  # lazy: Agg canvas, no pyplot

    found = {p: figures[f"{p}learning_curve"] for p in PROFILES if f"{p}learning_curve" in figures}
    if not found:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    wer_ax, loss_ax = fig.subplots(1, 2)
    for prefix, curve in found.items():
        name = PROFILES[prefix]
        (line,) = wer_ax.plot(curve["step"], curve["dev_wer_greedy"], marker="o", label=name)
        beam = figures.get(f"{prefix}dev_wer")
        if beam is not None:
            wer_ax.scatter(
                [curve["step"][-1]],
                [beam],
                marker="*",
                s=120,
                color=line.get_color(),
                label=f"{name}: beam + LM {beam:.3f}",
            )
        loss_ax.plot(curve["step"], curve["train_loss"], label=name, color=line.get_color())
    wer_ax.set(title="dev WER (greedy; star: beam + LM)", xlabel="step", ylabel="WER")
    wer_ax.set_ylim(bottom=0)
    loss_ax.set(title="train CTC loss", xlabel="step", ylabel="loss")
    wer_ax.legend(fontsize=8)
    loss_ax.legend(fontsize=8)
    fig.savefig(path, dpi=80)
    return path
