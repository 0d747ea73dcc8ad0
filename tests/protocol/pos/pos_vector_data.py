"""Loading of the reference PoS vector files (shared/vectors/pos_k17.json, pos_k20.json)."""

from __future__ import annotations

import functools
import json

from shared_paths import require_vectors


@functools.cache
def _load(name: str) -> dict:
    return json.loads(require_vectors(name).read_text())


def load_vectors(k: int) -> dict:
    # require_vectors skips/fails loudly; call it on every use so a skip is never cached away
    require_vectors(f"pos_k{k}.json")
    return _load(f"pos_k{k}.json")
