"""A tiny, randomly initialised InstructPix2Pix pipeline, built offline, for tests and benchmarks.

`build_tiny_instruct_pix2pix(dest)` writes a complete diffusers folder (model_index.json, unet, vae,
text_encoder, tokenizer, scheduler; no safety checker) that `DiffusionPipeline.from_pretrained(dest)`
loads with no hub access. The weights are random, so the images are noise-like: it exercises the real
loading, conditioning, denoising and decoding code of diffusers (and LoRA loading, training loops)
in seconds on a CPU, never the quality of a model.

Same arguments => same weights: every component is initialised under its own fixed torch seed.
Needs the `diffusers` extra (torch, diffusers, transformers).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# CLIP's byte-level BPE works on the 256 printable stand-ins of the bytes; a vocabulary with each
# of them (alone and as a word end, "</w>") plus the two special tokens encodes any text with no
# merges at all: one token per byte. Enough for a tokenizer that has to exist, not to be good.
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
TINY_MAX_TOKENS = 32  # prompts longer than this (in bytes) are truncated, as CLIP truncates at 77


def _bytes_to_unicode() -> list[str]:
    """The GPT-2/CLIP byte -> printable character table (same order as the reference implementation)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tiny_clip_vocab() -> dict[str, int]:
    """Special tokens first (ids 0 and 1), then each byte character, then each as a word end."""
    symbols = _bytes_to_unicode()
    tokens = [_BOS, _EOS] + symbols + [s + "</w>" for s in symbols]
    return {tok: i for i, tok in enumerate(tokens)}


def build_tiny_instruct_pix2pix(dest: Path, *, cross_attention_dim: int = 32) -> Path:
    """Write a tiny random `StableDiffusionInstructPix2PixPipeline` to `dest` and return `dest`.

    UNet: 8 input channels (4 noisy latents + 4 source latents, as InstructPix2Pix), two blocks of
    32/64 channels. VAE: two blocks, so latents are half the image size (vae_scale_factor 2).
    Text encoder: 2-layer CLIP, hidden size `cross_attention_dim`. About 5 MB on disk.
    """
    import torch
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=8, norm_num_groups=8,
    )
    torch.manual_seed(1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=32,
    )
    vocab = tiny_clip_vocab()
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=cross_attention_dim, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=TINY_MAX_TOKENS, bos_token_id=vocab[_BOS],
        eos_token_id=vocab[_EOS], pad_token_id=vocab[_EOS], projection_dim=cross_attention_dim,
    ))
    with tempfile.TemporaryDirectory(prefix="fedbench-tiny-tok-") as tmp:
        # vocab.json + merges.txt on disk, the one constructor form transformers 4.x and 5.x share.
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                                  model_max_length=TINY_MAX_TOKENS)
    # Ancestral sampling draws fresh noise at every step: the seed matters beyond the initial latents,
    # which is what a seed test should exercise.
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                num_train_timesteps=1000)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(dest, safe_serialization=True)
    (dest / "FEDBENCH_TINY.json").write_text(json.dumps(
        {"what": "tiny random StableDiffusionInstructPix2PixPipeline for tests", "weights": "random (seeds 0, 1, 2)",
         "cross_attention_dim": cross_attention_dim}, indent=2) + "\n")
    return dest
