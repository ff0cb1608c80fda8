"""The deployable model: the bundle, refit, and ``emoflow predict``."""
