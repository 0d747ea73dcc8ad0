"""The cluster secret: one shared token every data-plane connection proves (``handshake``).

Operators give it as ``cluster --cluster-secret TEXT``, ``--cluster-secret-file PATH`` (preferred:
it stays out of ``ps`` and supervisor files) or the environment variable
``AUTONOMYS_CLUSTER_SECRET``; a flag wins over the environment, both flags at once is an error.
Surrounding whitespace is dropped (so ``echo TOKEN > file`` works).

:class:`ClusterSecret` never shows its value: ``repr`` and :meth:`public_view` (what ``--dry-run``
prints) say only whether one is set and where it came from, and a config struct holding one
cannot be encoded without the ``public_view`` hook (no silent leak into JSON).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Callable, Mapping

ENV_VAR = "AUTONOMYS_CLUSTER_SECRET"
MIN_RECOMMENDED_LENGTH = 16


class ClusterSecretError(ValueError):
    """The secret cannot be loaded (empty, unreadable file, given twice); one line."""


class ClusterSecret:
    """A secret (or the absence of one) and where it came from. ``key`` is b"" when unset."""

    __slots__ = ("_key", "source")

    def __init__(self, key: bytes | None = None, source: str | None = None) -> None:
        if key is not None and not key:
            raise ClusterSecretError("the cluster secret is empty")
        self._key = key
        self.source = source if key is not None else None

    @property
    def is_set(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> bytes:
        """HMAC key of the handshake (empty without a secret)."""
        return self._key or b""

    def public_view(self) -> dict:
        return {"set": self.is_set, "source": self.source}

    def __repr__(self) -> str:
        return f"ClusterSecret(set from {self.source})" if self.is_set else "ClusterSecret(not set)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClusterSecret) and self._key == other._key

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self.key).digest()) if self.is_set else 0


NO_SECRET = ClusterSecret()


def as_secret(secret: "ClusterSecret | bytes | str | None") -> ClusterSecret:
    """Accept a ClusterSecret, raw bytes/text (tests, embedding) or None."""
    if isinstance(secret, ClusterSecret):
        return secret
    if secret is None:
        return NO_SECRET
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    return ClusterSecret(key, "argument")


def load_cluster_secret(text: str | None = None, file: str | None = None, environ: Mapping[str, str] | None = None,
                        warn: Callable[[str], None] | None = None) -> ClusterSecret:
    """The secret from ``--cluster-secret`` ``text``, ``--cluster-secret-file`` ``file`` or
    ``environ[AUTONOMYS_CLUSTER_SECRET]`` (in that order; ``environ`` defaults to os.environ).
    ``warn`` receives advice that is not an error (short secret, file readable by others)."""
    env = os.environ if environ is None else environ
    if text is not None and file is not None:
        raise ClusterSecretError("give either --cluster-secret or --cluster-secret-file, not both")
    if file is not None:
        key, source = _read_secret_file(file, warn), f"--cluster-secret-file {file}"
    elif text is not None:
        key, source = text.encode(), "--cluster-secret"
    elif env.get(ENV_VAR) is not None:
        key, source = env[ENV_VAR].encode(), f"env {ENV_VAR}"
    else:
        return NO_SECRET
    key = key.strip()
    if not key:
        raise ClusterSecretError(f"the cluster secret from {source} is empty")
    if warn is not None and len(key) < MIN_RECOMMENDED_LENGTH:
        warn(f"the cluster secret from {source} is shorter than {MIN_RECOMMENDED_LENGTH} characters")
    return ClusterSecret(key, source)


def _read_secret_file(path: str, warn: Callable[[str], None] | None) -> bytes:
    target = Path(path).expanduser()
    try:
        data = target.read_bytes()
        mode = target.stat().st_mode
    except OSError as exc:
        raise ClusterSecretError(f"cannot read --cluster-secret-file {path!r}: {exc.strerror or exc}") from None
    if warn is not None and mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"--cluster-secret-file {path!r} is readable by other users (chmod 600 it)")
    return data
