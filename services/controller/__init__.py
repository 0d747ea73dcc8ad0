"""Controller role: proxies the node (RPC) to the cluster over NATS (spec 06 §1)."""
