"""A corpus folder on disk: its identity check on reuse, its manifest, its atomic publication.

A corpus folder is never overwritten: the same parameters reuse it, other ones are refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MANIFEST_COLUMNS = (
    "utterance_id",
    "audio_path",
    "transcript",
    "voice",
    "synthesizer",
    "intent",
    "entities",
    "era",
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_sha256(root: Path, audio_paths: Sequence[str]) -> str:
    """One hash over the manifest and every clip, in manifest order."""
    digest = hashlib.sha256((root / "manifest.csv").read_bytes())
    for rel in audio_paths:
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def check_existing(out_dir: Path, params: dict[str, Any]) -> bool:
    """True if out_dir holds this very corpus; raise if it holds anything else; False if empty."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder; choose another corpus folder")
    info_path = out_dir / "corpus.json"
    if not info_path.exists():
        if any(out_dir.iterdir()):
            raise ValueError(
                f"{out_dir} is not empty and holds no corpus.json, so it was not made by "
                "build_corpus; choose another folder (existing data is never overwritten)"
            )
        return False
    info = json.loads(info_path.read_text(encoding="utf-8"))
    stored = info.get("params", {})
    wanted = json.loads(json.dumps(params))
    if stored != wanted:
        differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ValueError(
            f"{out_dir} already holds a corpus built with different parameters "
            f"(differing: {', '.join(differing)}); choose another folder "
            "(existing data is never overwritten)"
        )
    manifest = out_dir / "manifest.csv"
    if not manifest.exists() or sha256_file(manifest) != info.get("manifest_sha256"):
        raise ValueError(
            f"{manifest} is missing or was modified after it was built; rebuild into another folder"
        )
    with manifest.open(newline="", encoding="utf-8") as f:
        paths = [row["audio_path"] for row in csv.DictReader(f)]
    missing = [p for p in paths if not (out_dir / p).exists()]
    if missing:
        raise ValueError(
            f"{out_dir} misses {len(missing)} clips (e.g. {missing[0]}); "
            "rebuild into another folder"
        )
    return True


def write_manifest(path: Path, rows: Sequence[Mapping[str, str]]) -> None:
    """Write manifest.csv with fixed columns and line endings."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def publish(tmp: Path, out_dir: Path, params: dict[str, Any]) -> None:
    """Move a finished corpus into place; accept a twin built meanwhile, never overwrite."""
    if out_dir.exists() and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    try:
        os.rename(tmp, out_dir)
    except OSError:
        if check_existing(out_dir, params):  # another run published the same corpus first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        raise
