"""Plot server role: encodes sectors (GPU or CPU) and streams them to plot-clients."""
