"""Pure protocol core: bit-exact Autonomys primitives with no I/O and no asyncio.

One module per concern (hashes, kzg, erasure, pieces, archiver, pos, sector, plotting, auditing,
proving, reading, verification); daemons are thin wrappers around these functions.
"""
