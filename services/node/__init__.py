"""Node side: JSON-RPC client for a real node and the embedded dev node (spec 05)."""
