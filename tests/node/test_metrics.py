"""Prometheus exposition of daemon stats (services.node.metrics)."""

from __future__ import annotations


def test_metrics_expose_numeric_stats() -> None:
    import urllib.request

    from services.node.metrics import serve_metrics

    stats = {"chainHeight": 3, "lastSlot": None, "unsafeRpc": True, "genesisHash": "ab"}
    server, _ = serve_metrics("127.0.0.1:0", "dev_node", lambda: stats)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    assert "dev_node_chain_height 3.0" in text and "dev_node_unsafe_rpc 1.0" in text
    assert "genesis" not in text and "last_slot" not in text
