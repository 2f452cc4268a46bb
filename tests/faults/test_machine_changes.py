"""The machine changes under the cycle (issue 14, item 7): a speech engine is removed and
installed again between retrains, and the workspace moves to another folder. Every retrain
still runs, the versions made before keep their bytes, and no voice changes split, so the
held-out sets stay held out.

The engine is removed for real: the PATH the flows run with holds every program of this
machine but `flite` (a folder of links), and installing it again links it back. A scheduled
retrain starts in a fresh worker process, which asks the machine again; here the flows run in
this process, so the engine lists it caches are cleared after each change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.scoping import Scope, Targets
from tests.conftest import tiny_scope

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]

FLITE = shutil.which("flite")


class Machine:
    """This machine's programs on a PATH of links, where `flite` can be removed and installed."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        assert FLITE is not None, "flite is installed by `make setup` (apt: flite)"
        self.flite = Path(FLITE)
        self.links = root / "usr-bin"
        self.links.mkdir(parents=True)
        real = self.flite.parent.resolve()
        for entry in real.iterdir():
            if entry.name != "flite":
                (self.links / entry.name).symlink_to(entry)
        path = [
            str(self.links) if Path(d).resolve() == real else d
            for d in os.environ["PATH"].split(os.pathsep)
        ]
        monkeypatch.setenv("PATH", os.pathsep.join(dict.fromkeys(path)))
        self._changed()

    def install_flite(self) -> None:
        (self.links / "flite").symlink_to(self.flite)
        self._changed()

    def remove_flite(self) -> None:
        (self.links / "flite").unlink()
        self._changed()

    @staticmethod
    def _changed() -> None:
        from tasks.synthesis.flite import flite_voices

        flite_voices.cache_clear()


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    yield Machine(tmp_path / "machine", monkeypatch)
    from tasks.synthesis.flite import flite_voices

    flite_voices.cache_clear()  # the next test sees the real machine again


def _scope(workspace: Path) -> Scope:
    """A tiny scope whose voice pool holds a flite voice, and whose retrains re-speak new
    names with all 17 voices (flite's too). Two epochs and no WER target: what is tested is
    that each retrain runs and what it stores, not how well it learns."""
    scope = tiny_scope(workspace, n_utterances=34, n_voices=17)
    source = scope.sources[0]
    assert source.synthetic is not None
    syn = source.synthetic.model_copy(update={"engines": ["espeak", "flite"]})
    return scope.model_copy(
        update={
            "sources": [source.model_copy(update={"synthetic": syn})],
            "training": scope.training.model_copy(update={"max_epochs": 2}),
            "targets": Targets(wer_clean=1, wer_car=1, cer_clean=1, cer_car=1),
            "labelling": scope.labelling.model_copy(update={"respeak_voices": 17}),
        }
    )


def _mine_a_new_name(scope: Scope, tmp_path: Path) -> None:
    """People type a name the champion cannot output: `voicecycle hot-words update` lists it,
    and the next retrain re-speaks it."""
    from flows.hot_words import hot_words

    typed = tmp_path / "typed.txt"
    typed.write_text("who is kolawole\ncall kolawole\nplay kolawole\n")
    assert hot_words(scope, str(typed))["mined"] == ["kolawole"]


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _manifest(scope: Scope, version: str) -> pd.DataFrame:
    path = scope.state.path("datasets_dir") / version / "manifest.csv"
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_removing_and_installing_an_engine_between_retrains_breaks_nothing(
    tmp_path: Path, machine: Machine, caplog: pytest.LogCaptureFixture
) -> None:
    from flows.retrain import retrain

    scope = _scope(tmp_path / "ws")
    machine.install_flite()
    first = retrain(scope, "first round, flite installed")
    v1 = str(first["dataset_version"])
    m1 = _manifest(scope, v1)
    assert "flite" in set(m1["synthesizer"])  # the pinned catalogue speaks with flite
    stored = {
        "dataset": _fingerprint(scope.state.path("datasets_dir") / v1),
        "augmented": _fingerprint(
            scope.state.path("augmented_dir") / str(first["augmented_version"])
        ),
    }
    _mine_a_new_name(scope, tmp_path)
    caplog.clear()

    machine.remove_flite()
    second = retrain(scope, "flite removed")
    said = [r.getMessage() for r in caplog.records if "rendered with no clips" in r.getMessage()]
    assert len(said) == 1 and "flite (voices kal" in said[0]  # printed once, to the run's log
    corpus_root = scope.state.path("corpus_dir")
    assert [p.name for p in corpus_root.glob("respoken-*flite0*")]  # the folder says so
    m2 = _manifest(scope, str(second["dataset_version"]))
    respoken = m2[m2["source"] == "respoken"]
    assert len(respoken) > 0 and "flite" not in set(respoken["synthesizer"])
    assert any("re-spoke" in c for c in second["changes"])  # type: ignore[attr-defined]

    machine.install_flite()
    moved = tmp_path / "moved" / "ws"  # and the workspace moves to another folder
    moved.parent.mkdir()
    shutil.move(scope.state.workspace, moved)
    scope = _scope(moved)
    caplog.clear()
    third = retrain(scope, "flite installed again, the workspace moved")
    # the registry followed the workspace: the champion was found and its lexicon read
    assert any("the workspace moved from" in r.getMessage() for r in caplog.records)
    assert any("re-spoke" in c for c in third["changes"])  # type: ignore[attr-defined]
    m3 = _manifest(scope, str(third["dataset_version"]))
    respoken = m3[m3["source"] == "respoken"]
    assert "flite" in set(respoken["synthesizer"])  # a new corpus hears it again

    # what was stored before the machine changed keeps its bytes
    assert _fingerprint(scope.state.path("datasets_dir") / v1) == stored["dataset"]
    assert (
        _fingerprint(scope.state.path("augmented_dir") / str(first["augmented_version"]))
        == stored["augmented"]
    )
    # the first version's clips are in every later one, each in the split it had
    for later in (m2, m3):
        kept = later.set_index("utterance_id").loc[m1["utterance_id"], "split"]
        assert list(kept) == list(m1["split"])
    # and no voice ever moved: a voice's split is the same in every version
    splits = pd.concat([m1, m2, m3]).groupby("voice")["split"].nunique()
    assert (splits == 1).all(), splits[splits > 1]
    held_out = set(m1.loc[m1["split"] != "train", "voice"])
    for later in (m2, m3):
        assert set(later.loc[later["split"] != "train", "voice"]) == held_out
