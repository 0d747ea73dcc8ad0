"""Autonomys farmer cluster in Python.

Layers (see docs/ARCHITECTURE.md): ``protocol`` (pure, no I/O), ``bus`` (NATS), ``p2p`` (raw
TCP data plane), ``node`` (node RPC client and embedded dev node), and one package per role.
"""

__version__ = "0.1.0"
