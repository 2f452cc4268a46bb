"""What a retrain changes: the data (labelled production batches join the sources, and the
labelled queries that bring new words are re-spoken by synthetic voices) and the augmentation
policy (the last error analysis's recommendations)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task

from data_contracts.scoping import (
    MIN_CORPUS_UTTERANCES,
    AugmentationPolicy,
    DataSource,
    Scope,
    SyntheticCorpus,
)
from models.recognizer import Recognizer
from tasks.artifacts import publish_markdown
from tasks.labelling import labelled_batches

RESPOKEN_SOURCE = "respoken"
RESPOKEN_TEXTS = "respoken_texts.txt"


def latest_recommendations(runs_dir: Path) -> Path | None:
    """The newest error analysis's recommendations.json, if any run wrote one."""
    found = sorted(
        runs_dir.glob("*/error_analysis/recommendations.json"), key=lambda p: p.stat().st_mtime
    )
    return found[-1] if found else None


def next_policy(
    policy: AugmentationPolicy, recommendations: dict[str, object]
) -> AugmentationPolicy:
    """The augmentation policy with the recommended changes applied (only known keys)."""
    proposed = recommendations.get("policy")
    if not isinstance(proposed, dict):
        return policy
    update = {k: proposed[k] for k in AugmentationPolicy.TUNABLE_KEYS if k in proposed}
    return AugmentationPolicy.model_validate({**policy.model_dump(), **update})


@task(name="retrain-scope")
def retrain_scope(scope: Scope) -> tuple[Scope, list[str]]:
    """The scope of the next round, and the changes made to it, in words."""
    changes: list[str] = []
    sources = list(scope.sources)
    known = {str(s.path) for s in sources if s.path is not None}
    for i, manifest in enumerate(labelled_batches(scope.state.path("labelling_dir"))):
        if str(manifest) in known:
            continue
        sources.append(DataSource(kind="csv", name=f"labelled-{i}", path=manifest))
        changes.append(f"added labelled production batch {manifest.parent.name}")
    policy = scope.augmentation
    rec_path = latest_recommendations(scope.state.path("runs_dir"))
    if rec_path is not None:
        policy = next_policy(policy, json.loads(rec_path.read_text()))
        if policy != scope.augmentation:
            changes.append(
                f"augmentation policy from {rec_path.parent.parent.name}: "
                f"share {policy.augmented_share:.2f}, SNR {policy.snr_db_min:g} to "
                f"{policy.snr_db_max:g} dB, weights {policy.noise_weights}"
            )
    return scope.model_copy(update={"sources": sources, "augmentation": policy}), changes


@task(name="current-champion")
def current_champion(scope: Scope) -> str | None:
    """The registry version of the champion (what a warm-started retrain refines)."""
    from tasks.registry import champion_version

    return champion_version(scope)


def new_word_queries(transcripts: Iterable[str], lexicon: set[str]) -> tuple[list[str], list[str]]:
    """The transcripts holding a word outside `lexicon` (once each, in order), and those words."""
    known = {w.lower() for w in lexicon}
    queries: list[str] = []
    words: dict[str, None] = {}
    for text in transcripts:
        text = " ".join(str(text).split())
        unknown = [w for w in text.split() if w not in known]
        if unknown and text not in queries:
            queries.append(text)
            words.update(dict.fromkeys(unknown))
    return queries, list(words)


@task(name="champion-lexicon")
def champion_lexicon(scope: Scope, version: str) -> set[str]:
    """The words the champion can output (its LM vocabulary and hot words)."""
    from tasks.registry import download_recognizer

    dest = scope.state.path("labelling_dir") / ".champion" / f"v{version}"
    return Recognizer.read_lexicon(download_recognizer(scope.registry.model_name, version, dest))


@task(name="respeak-new-words")
def respeak_new_words(scope: Scope, lexicon: set[str]) -> tuple[Scope, list[str]]:
    """Add a synthetic source that speaks the labelled queries the champion has no words for,
    the names mined from typed queries (tasks/hot_words.py: each name and the queries that
    held it) and the curated hot words (`training.hot_words`, `training.hot_words_file`) it
    has no words for.

    A new name arrives in production a handful of times; spoken by `labelling.respeak_voices`
    synthetic voices from the main corpus's pool (so each voice keeps its split), every
    labelled example becomes several, and a listed name nobody has said yet is heard too.
    The texts accumulate in `<state.labelling_dir>/respoken_texts.txt` (append only), so a
    later retrain, whose champion already knows these words, still trains on them.
    """
    voices = scope.labelling.respeak_voices
    if voices == 0 or not lexicon:
        return scope, []
    transcripts: list[str] = []
    for manifest in labelled_batches(scope.state.path("labelling_dir")):
        frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        transcripts.extend(t for t in frame["transcript"] if t.strip())
    from tasks.hot_words import mined_texts
    from tasks.training import read_hot_words

    # the names mined from typed queries (and the queries that held them), beside any list
    # the scope curates
    mined = mined_texts(scope.state.path("hot_words_dir"), scope.registry.model_name)
    found, words = new_word_queries(
        [*transcripts, *mined, *read_hot_words(scope.training)], lexicon
    )
    store = scope.state.path("labelling_dir") / RESPOKEN_TEXTS
    kept = store.read_text(encoding="utf-8").splitlines() if store.is_file() else []
    added = [t for t in found if t not in kept]
    if added:
        store.parent.mkdir(parents=True, exist_ok=True)
        with store.open("a", encoding="utf-8") as f:
            f.writelines(f"{t}\n" for t in added)
    texts = kept + added
    if not texts:
        return scope, []
    base = next((s.synthetic for s in scope.sources if s.synthetic is not None), None)
    base = base or SyntheticCorpus()
    # this round's texts, frozen: the store only grows, so its line count names its content
    snapshot = store.parent / f"respoken-{len(texts)}.txt"
    if not snapshot.is_file() or snapshot.read_text(encoding="utf-8").splitlines() != texts:
        snapshot.write_text("".join(f"{t}\n" for t in texts), encoding="utf-8")
    source = DataSource(
        kind="synthetic",
        name=RESPOKEN_SOURCE,
        synthetic=SyntheticCorpus(
            # each text by `voices` voices, and never under a corpus's minimum of 4 clips
            n_utterances=max(MIN_CORPUS_UTTERANCES, len(texts) * voices),
            seed=base.seed,
            n_voices=base.n_voices,
            texts_file=snapshot,
            engines=base.engines,  # the main corpus's catalogue request, hence its pin
            # training data: the capped (slow, held-out) engines speak none of it
            engine_utterances={e: 0 for e in base.engine_utterances},
        ),
    )
    sources = [s for s in scope.sources if s.name != RESPOKEN_SOURCE] + [source]
    shown = ", ".join(words[:12]) + (", ..." if len(words) > 12 else "")
    change = (
        f"re-spoke {len(texts)} labelled queries and listed names with new words by {voices} "
        "synthetic voices "
        f"each ({len(added)} queries new this round"
        + (f"; {len(words)} words the champion lacks: {shown})" if words else ")")
    )
    return scope.model_copy(update={"sources": sources}), [change]


@dataclass(frozen=True)
class RetrainPlan:
    """The next round: its scope, what changed and why, and the champion it refines."""

    scope: Scope
    changes: tuple[str, ...]
    champion: str | None

    @property
    def warm_start_from(self) -> str | None:
        """The champion version training starts from (None: from scratch)."""
        return self.champion if self.scope.training.warm_start else None


@task(name="plan-retrain")
def plan_retrain(scope: Scope) -> RetrainPlan:
    """The scope of the next round: labelled batches added, the policy updated, and the
    labelled queries (and listed names) with words the champion lacks re-spoken."""
    next_scope, changes = retrain_scope.fn(scope)
    champion = current_champion.fn(next_scope)
    if champion is not None:
        lexicon = champion_lexicon.fn(next_scope, champion)
        next_scope, respoken = respeak_new_words.fn(next_scope, lexicon)
        changes = [*changes, *respoken]
    return RetrainPlan(next_scope, tuple(changes), champion)


@task(name="publish-retrain-changes")
def publish_retrain_changes(reason: str, changes: Iterable[str]) -> None:
    """Why this retrain ran and what it changes, as Prefect artifacts."""
    publish_markdown("retrain-reason", f"# Retrain\n\nWhy: {reason}", "Why this retrain ran")
    listed = list(changes) or ["nothing"]
    publish_markdown(
        "retrain-changes",
        "# What this retrain changes\n\n" + "".join(f"- {c}\n" for c in listed),
        "Data and policy changes of this retrain",
    )


@task(name="retrain-summary")
def retrain_summary(
    reason: str,
    claimed_labels: list[str],
    plan: RetrainPlan,
    dataset_version: str,
    augmented_version: str,
    trained: Mapping[str, object],
    packaged: Mapping[str, object],
) -> dict[str, object]:
    """What the retrain did, as the flow returns it."""
    return {
        "reason": reason,
        "claimed_label_files": claimed_labels,
        "changes": list(plan.changes),
        "dataset_version": dataset_version,
        "augmented_version": augmented_version,
        **trained,
        **packaged,
    }


@task(name="roll-back-champion")
def roll_back_champion(scope: Scope) -> tuple[str, str]:
    """Undo the last promotion: the champion alias back to the previous champion; (from, to)."""
    from tasks.registry import configure_mlflow, rollback

    configure_mlflow(
        scope.state.url("mlflow_tracking_uri"),
        scope.registry.experiment,
        scope.state.path("mlflow_artifacts"),
    )
    return rollback(scope.registry.model_name)
