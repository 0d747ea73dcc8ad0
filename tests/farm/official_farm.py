"""The official farm vector (``vectors/official_farm``): paths, parameters and writable copies.

Import as ``official_farm`` (tests/farm is on sys.path for the farm tests; other folders insert
it). Every test works on a copy: the shared vector is read-only and must stay byte for byte what
the official farmer wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from functools import cache
from pathlib import Path

from shared_paths import require_vectors

FARM_FILES = ("single_disk_farm.json", "identity.bin", "metadata.bin", "plot.bin", "piece_cache.bin",
              "known_addresses.bin")


def vector_dir() -> Path:
    return require_vectors("official_farm/README.md").parent


@cache
def params() -> dict:
    return json.loads((vector_dir() / "params.json").read_text())


@cache
def accepted_blocks() -> list[dict]:
    return [json.loads(line) for line in (vector_dir() / "accepted_blocks.jsonl").read_text().splitlines()]


@cache
def manifest_sha256() -> dict[str, str]:
    """``file -> sha256`` from MANIFEST.md's farm table."""
    sums = {}
    for line in (vector_dir() / "MANIFEST.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in FARM_FILES:
            sums[cells[0]] = cells[2]
    assert set(sums) == set(FARM_FILES), f"MANIFEST.md lists {sorted(sums)}"
    return sums


def genesis_hash() -> bytes:
    return bytes.fromhex(params()["genesisHash"])


def copy_farm(target: Path) -> Path:
    """A writable copy of the official farm directory at ``target``."""
    shutil.copytree(vector_dir() / "farm", target)
    os.chmod(target, 0o755)
    for entry in target.iterdir():
        entry.chmod(entry.stat().st_mode | stat.S_IWUSR)
    return target
