"""Storage: HDF5 feature shards, the per-clip cache, prediction tables and atomic writes."""
