"""Proof server role: computes proofs of space for audit winners (GPU or CPU)."""
