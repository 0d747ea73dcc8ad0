"""Piece cache library shared by the sharded cache, the full-piece cache and the plot-server's
priority cache: the on-disk store, rendezvous placement, the cache protocol and the piece getter."""
