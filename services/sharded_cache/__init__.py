"""Sharded piece cache role: stores pieces on disk for the controller's cache group."""
