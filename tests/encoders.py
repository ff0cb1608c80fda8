"""Tiny randomly initialised encoders saved locally, so the real loading and embedding code runs
with no network (the same files a user's local model folder holds)."""

from __future__ import annotations

from pathlib import Path


def tiny_wav2vec2(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A 2-layer wav2vec 2.0 (hidden size 32) written with ``save_pretrained``."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    cfg = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
        conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8),
        num_feat_extract_layers=3, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        vocab_size=8,
    )  # fmt: skip
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).save_pretrained(folder)
    return folder
