"""Training one branch: datasets over shards, normalisation, loaders, the loop, its outputs and
checkpoints."""
