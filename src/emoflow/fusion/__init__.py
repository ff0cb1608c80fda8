"""Fusion of the branches: the methods' fits, the one function that applies them, and the fuse
job."""
