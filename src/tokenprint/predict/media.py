"""What images and video in a prompt cost: the prompt tokens they add and the vision encoder's
FLOPs, from the model's ``vision`` encoder (:mod:`tokenprint.catalog.vision`).

* Tokens: patches ÷ ``merge²`` per image, tile or pair of frames (``fixed``: the pooled
  ``tokens_per_image``). They enter the language model's prompt like text tokens: prefill FLOPs,
  KV cache, attention context.
* Encoder FLOPs: ``2·P_vit·n + 4·layers·hidden·n²`` over each span of ``n`` patches that attend
  to each other (an image, a tile, a pair of frames), plus ``2·P_projector`` per token. The
  encoder runs once per request, in its prefill, compute-bound, on the same GPUs.

Pure arithmetic; the sizing rules follow each family's image processor (see ``VisionEncoder``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tokenprint.catalog import ModelArch
from tokenprint.catalog.vision import VisionEncoder
from tokenprint.errors import TokenprintError

# Sizes assumed where a caller gives none: a 1-megapixel photo or screenshot; video as vLLM
# samples it by default (32 frames) at 360p, the commonest size of LLaVA-Video-178K's sources.
DEFAULT_IMAGE_PX = (1024, 1024)
DEFAULT_FRAME_PX = (640, 360)
DEFAULT_VIDEO_FRAMES = 32


@dataclass(frozen=True)
class Media:
    """What one request's prompt carries besides text."""

    images: int = 0
    image_px: tuple[int, int] = DEFAULT_IMAGE_PX        # width, height
    videos: int = 0
    video_frames: int = DEFAULT_VIDEO_FRAMES
    frame_px: tuple[int, int] = DEFAULT_FRAME_PX        # width, height
    video_seconds: float | None = None   # the clip's length: a processor that resamples by
                                         # frame rate keeps fewer frames (None: all of them)

    @property
    def empty(self) -> bool:
        """True for a text-only prompt."""
        return self.images == 0 and self.videos == 0

    def describe(self) -> str:
        """For records and notes: ``1 image 1024×1024`` or ``1 video 32 frames 640×360``."""
        parts = []
        if self.images:
            parts.append(f"{self.images} image{'s' * (self.images > 1)} "
                         f"{self.image_px[0]}×{self.image_px[1]}")
        if self.videos:
            secs = f" over {self.video_seconds:.3g} s" if self.video_seconds else ""
            parts.append(f"{self.videos} video{'s' * (self.videos > 1)} {self.video_frames} "
                         f"frames{secs} {self.frame_px[0]}×{self.frame_px[1]}")
        return ", ".join(parts) or "text only"


@dataclass(frozen=True)
class MediaCost:
    """Per request: prompt tokens the media add and the encoder's FLOPs."""

    tokens: float
    encoder_flops: float


TEXT_ONLY = MediaCost(0.0, 0.0)


def _span_flops(enc: VisionEncoder, patches: float, tokens: float | None = None) -> float:
    """Encoder FLOPs over ``patches`` patches that attend to each other, and the projection of
    the ``tokens`` they become (default: merged ``merge × merge``)."""
    vit = enc.params - enc.projector_params
    tokens = patches / enc.merge ** 2 if tokens is None else tokens
    return (2.0 * vit * patches + 4.0 * enc.layers * enc.hidden_size * patches ** 2
            + 2.0 * enc.projector_params * tokens)


def native_grid(enc: VisionEncoder, width: int, height: int, frames: int = 1,
                max_pixels: int | None = None) -> tuple[int, int]:
    """Height and width in patches after Qwen's resize: rounded to ``patch × merge`` pixels,
    scaled so that all frames together stay within ``[min_pixels, max_pixels]``."""
    factor = enc.patch_size * enc.merge
    top = max_pixels or enc.max_pixels
    t = math.ceil(frames / enc.temporal_patch) * enc.temporal_patch if frames > 1 else 1
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if t * h * w > top:
        beta = math.sqrt(t * height * width / top)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif t * h * w < enc.min_pixels:
        beta = math.sqrt(enc.min_pixels / (t * height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h // enc.patch_size, w // enc.patch_size


def image_cost(enc: VisionEncoder, width: int, height: int) -> MediaCost:
    """One image."""
    if enc.tiling == "fixed":
        return MediaCost(float(enc.tokens_per_image),
                         _span_flops(enc, enc.patches_per_tile, enc.tokens_per_image))
    if enc.tiling == "tiles":
        side = enc.image_size
        tiles = min(enc.max_tiles, math.ceil(width / side) * math.ceil(height / side))
        tiles += 1 if enc.thumbnail and tiles > 1 else 0
        n = enc.patches_per_tile
        return MediaCost(tiles * n / enc.merge ** 2, tiles * _span_flops(enc, n))
    gh, gw = native_grid(enc, width, height)
    n = gh * gw
    return MediaCost(n / enc.merge ** 2, _span_flops(enc, n))


def frames_kept(enc: VisionEncoder, frames: int, seconds: float | None) -> int:
    """Frames the processor keeps of ``frames`` spanning ``seconds``: resampled to ``video_fps``
    within ``[min_frames, max_frames]`` (Qwen3-VL's ``sample_frames``), never more than given."""
    if not enc.video_fps or seconds is None:
        return frames
    wanted = int(seconds * enc.video_fps)
    return min(max(wanted, enc.min_frames), enc.max_frames, frames)


def video_cost(enc: VisionEncoder, frames: int, width: int, height: int,
               seconds: float | None = None) -> MediaCost:
    """One video of ``frames`` frames over ``seconds`` (native encoders only: each pair of kept
    frames is one span of patches)."""
    frames = frames_kept(enc, frames, seconds)
    gh, gw = native_grid(enc, width, height, frames, enc.video_max_pixels or enc.max_pixels)
    groups = math.ceil(frames / enc.temporal_patch)
    n = gh * gw
    return MediaCost(groups * n / enc.merge ** 2, groups * _span_flops(enc, n))


def media_cost(model: ModelArch, media: Media) -> MediaCost:
    """Tokens and encoder FLOPs of one request's media on ``model``; a clear error where the
    model cannot take them."""
    if media.empty:
        return TEXT_ONLY
    for name, n in (("images", media.images), ("videos", media.videos),
                    ("video frames", media.video_frames)):
        if n < 0 or (name == "video frames" and media.videos and n < 1):
            raise TokenprintError(f"{name} {n} is invalid; it must be >= "
                                  f"{1 if name == 'video frames' else 0}")
    if media.video_seconds is not None and not 0 < media.video_seconds <= 86400:
        raise TokenprintError(f"video length {media.video_seconds} s is invalid; it must be "
                              "> 0 and <= 86400 s")
    for name, (w, h) in (("image size", media.image_px), ("frame size", media.frame_px)):
        if not (1 <= w <= 16384 and 1 <= h <= 16384):
            raise TokenprintError(f"{name} {w}x{h} is invalid; each side must be 1–16384 px")
    enc = model.vision
    if enc is None:
        raise TokenprintError(f"{model.id} is a text-only model: it takes no images or video "
                              "(catalog models with a vision encoder take them)")
    if media.videos and enc.tiling != "native":
        raise TokenprintError(f"{model.id} takes no video in vLLM (images only)")
    img = image_cost(enc, *media.image_px) if media.images else TEXT_ONLY
    vid = (video_cost(enc, media.video_frames, *media.frame_px, media.video_seconds)
           if media.videos else TEXT_ONLY)
    return MediaCost(media.images * img.tokens + media.videos * vid.tokens,
                     media.images * img.encoder_flops + media.videos * vid.encoder_flops)
