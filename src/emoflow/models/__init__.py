"""Branch models: the audio CNN on log-mel windows, the visual CNN + GRU on face frames, the
MLP on window vectors (eGeMAPS, SSL) and temporal aggregation of per-frame vectors (au:
OpenFace's outputs; face_cnn: the frozen FER mini-Xception's).

Every model's ``forward`` returns a dict with ``embedding`` (the vector before the heads),
``logits`` (categorical targets) and/or ``va`` (valence, arousal in [-1, 1]).
:func:`emoflow.models.arch.build_branch_model` rebuilds a model from the constructor kwargs stored
in a model bundle (``arch["name"]`` picks the class).
"""
