"""The vision encoder of a multimodal model, as its ``config.json`` (``vision_config``) and its
image processor's configuration describe it.

An image (or a video frame) is cut into square patches of ``patch_size`` pixels; a vision
transformer of ``layers`` blocks runs over them; ``merge × merge`` neighbouring patches become one
token of the language model's prompt (Qwen's spatial merge, Llama 4's and InternVL's pixel
shuffle). How the image is sized first depends on the family (``tiling``):

* ``native`` (Qwen2.5/3-VL): kept near its own size, rounded to ``patch_size × merge`` pixels and
  held between ``min_pixels`` and ``max_pixels``; a video is resampled to ``video_fps`` frames a
  second (at least ``min_frames``), whose frames go in pairs (``temporal_patch``) through one
  patch each.
* ``fixed`` (Gemma 3's SigLIP): resized to ``image_size`` square and pooled to
  ``tokens_per_image`` tokens.
* ``tiles`` (Llama 4, Nemotron/InternVL): covered by up to ``max_tiles`` tiles of ``image_size``
  square, plus one downscaled thumbnail of the whole image where more than one tile is used.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VisionEncoder(BaseModel):
    """A vision transformer and the rule that turns an image into prompt tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    layers: int = Field(ge=1)
    hidden_size: int = Field(ge=1)
    ffn_size: int = Field(ge=1)
    mlp_matrices: int = Field(default=2, ge=2, le=3)    # 2: a plain GELU MLP
    patch_size: int = Field(ge=1)
    merge: int = Field(default=1, ge=1)                  # patches per side merged into a token
    temporal_patch: int = Field(default=1, ge=1)         # video frames per patch (Qwen: 2)
    tiling: Literal["native", "fixed", "tiles"]
    image_size: int = Field(default=0, ge=0)             # fixed: resized side; tiles: tile side
    max_tiles: int = Field(default=1, ge=1)
    thumbnail: bool = False
    tokens_per_image: int = Field(default=0, ge=0)       # fixed: tokens after pooling
    min_pixels: int = Field(default=0, ge=0)             # native: the processor's bounds
    max_pixels: int = Field(default=0, ge=0)
    video_max_pixels: int = Field(default=0, ge=0)       # native: all of a video's frames
    video_fps: float = Field(default=0.0, ge=0)          # frames per second the processor keeps
    min_frames: int = Field(default=1, ge=1)             # (0: every frame it is given)
    max_frames: int = Field(default=100_000, ge=1)
    projector_params: int = Field(default=0, ge=0)       # merger / projector into the LM

    @model_validator(mode="after")
    def _complete(self) -> VisionEncoder:
        if self.tiling in ("fixed", "tiles") and not self.image_size:
            raise ValueError(f"tiling = {self.tiling!r} needs image_size")
        if self.tiling == "fixed" and not self.tokens_per_image:
            raise ValueError("tiling = 'fixed' needs tokens_per_image")
        if self.tiling == "native" and not (0 < self.min_pixels <= self.max_pixels):
            raise ValueError("tiling = 'native' needs 0 < min_pixels <= max_pixels")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}")
        return self

    @property
    def params(self) -> int:
        """Matmul weights: per block Q, K, V, O (4·h²) and the MLP, plus the projector."""
        h = self.hidden_size
        return self.layers * (4 * h * h + self.mlp_matrices * h * self.ffn_size) \
            + self.projector_params

    @property
    def patches_per_tile(self) -> int:
        """Patches of one fixed-size image or tile."""
        return (self.image_size // self.patch_size) ** 2
