"""Images and video in prompts: tokens and vision-encoder FLOPs derived by hand from each model's
config.json and processor configuration, and how they enter the prefill."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from tokenprint.errors import TokenprintError
from tokenprint.predict import predict_records
from tokenprint.predict.media import Media, frames_kept, media_cost
from tokenprint.predict.model import pass_time
from tokenprint.predict.params import ProfileArrays, hardware_arrays, resolve_profile
from tokenprint.predict.shapes import ShapeArrays

# Qwen3-VL vision tower (8B and up): depth 27, hidden 1152, MLP 4304, patch 16, merge 2
QL, QH, QF = 27, 1152, 4304
QVIT = QL * (4 * QH * QH + 2 * QH * QF)


def _span(vit: float, layers: int, hidden: int, patches: float, proj: float,
          merge: int) -> float:
    return (2 * vit * patches + 4 * layers * hidden * patches ** 2
            + 2 * proj * patches / merge ** 2)


def test_qwen3_vl_image_by_hand(catalog):
    m = catalog.model("qwen3-vl-8b")
    proj = 4 * (4608 * 4608 + 4608 * 4096)            # merger + three DeepStack mergers
    assert m.vision.params == QVIT + proj
    cost = media_cost(m, Media(images=1, image_px=(1024, 1024)))
    # 1024 px is 32 units of 32 px (patch 16 × merge 2) a side: 64 × 64 patches, 1024 tokens
    assert cost.tokens == 1024
    assert cost.encoder_flops == pytest.approx(_span(QVIT, QL, QH, 4096, proj, 2))
    # two images cost twice one
    two = media_cost(m, Media(images=2, image_px=(1024, 1024)))
    assert two.tokens == 2048 and two.encoder_flops == pytest.approx(2 * cost.encoder_flops)


def test_qwen3_vl_small_image_is_scaled_up_to_min_pixels(catalog):
    m = catalog.model("qwen3-vl-8b")
    # 100 × 100 px is below 65,536 px: scaled by sqrt(65536 / 10000) = 2.56 to 256 px a side
    cost = media_cost(m, Media(images=1, image_px=(100, 100)))
    assert cost.tokens == (256 // 32) ** 2                     # 64 tokens
    # a huge photo is scaled down to 16,777,216 px at most
    big = media_cost(m, Media(images=1, image_px=(8192, 8192)))
    assert big.tokens * 32 * 32 <= 16_777_216
    assert big.tokens == (4096 // 32) ** 2


def test_qwen3_vl_video_resampled_by_frame_rate(catalog):
    m = catalog.model("qwen3-vl-8b")
    enc = m.vision
    # ML.ENERGY's clips: 32 frames re-encoded at 30 fps (1.07 s); at 2 fps that is 2 frames,
    # raised to the processor's minimum of 4
    assert frames_kept(enc, 32, 32 / 30) == 4
    assert frames_kept(enc, 32, 10.0) == 20
    assert frames_kept(enc, 32, 100.0) == 32                    # never more than given
    assert frames_kept(enc, 32, None) == 32                     # no length: all frames
    cost = media_cost(m, Media(videos=1, video_frames=32, video_seconds=32 / 30,
                               frame_px=(640, 360)))
    # 640 × 360 rounds to 640 × 352 px: 40 × 22 patches, 220 tokens per pair of frames, 2 pairs
    proj = 4 * (4608 * 4608 + 4608 * 4096)
    assert cost.tokens == 2 * 220
    assert cost.encoder_flops == pytest.approx(2 * _span(QVIT, QL, QH, 880, proj, 2))
    # all 32 frames: 16 pairs (4 × 32 × 640 × 352 px is inside the 25,165,824 px budget)
    assert media_cost(m, Media(videos=1, frame_px=(640, 360))).tokens == 16 * 220


def test_gemma3_fixed_tokens_by_hand(catalog):
    m = catalog.model("gemma-3-12b")
    vit = 27 * (4 * 1152 ** 2 + 2 * 1152 * 4304)
    proj = 1152 * 3840
    for px in ((1024, 1024), (300, 200)):                       # resized to 896 × 896 always
        cost = media_cost(m, Media(images=1, image_px=px))
        assert cost.tokens == 256
        assert cost.encoder_flops == pytest.approx(_span(vit, 27, 1152, 64 * 64, proj, 4))


def test_llama4_tiles_by_hand(catalog):
    m = catalog.model("llama-4-scout")
    vit = 34 * (4 * 1408 ** 2 + 2 * 1408 * 5632)
    proj = 60_817_408
    one_tile = _span(vit, 34, 1408, 24 * 24, proj, 2)           # 336 / 14 = 24 patches a side
    small = media_cost(m, Media(images=1, image_px=(336, 336)))
    assert small.tokens == 144                                  # one tile, no thumbnail
    assert small.encoder_flops == pytest.approx(one_tile)
    # 1024 px needs 4 × 4 tiles (at most 16) plus the thumbnail: 17 × 144 tokens
    big = media_cost(m, Media(images=1, image_px=(1024, 1024)))
    assert big.tokens == 17 * 144
    assert big.encoder_flops == pytest.approx(17 * one_tile)


def test_nemotron_vl_tiles_by_hand(catalog):
    m = catalog.model("nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16")
    assert m.id == "nemotron-nano-12b-v2-vl" and m.ssm_layers == 28
    vit = 32 * (4 * 1280 ** 2 + 2 * 1280 * 5120)
    proj = 5120 * 20480 * 2                                     # mlp1: 5120 → 20480 → 5120
    assert m.vision.params == vit + proj
    one_tile = _span(vit, 32, 1280, 32 * 32, proj, 2)           # 512 / 16 = 32 patches a side
    # 1024 × 1024: 2 × 2 tiles of 512 px and the thumbnail, 256 tokens each
    cost = media_cost(m, Media(images=1, image_px=(1024, 1024)))
    assert cost.tokens == 5 * 256
    assert cost.encoder_flops == pytest.approx(5 * one_tile)
    # a panorama is capped at 12 tiles (plus the thumbnail)
    assert media_cost(m, Media(images=1, image_px=(8192, 1024))).tokens == 13 * 256


def test_media_refused_where_the_model_cannot_take_it(catalog):
    with pytest.raises(TokenprintError, match="text-only"):
        media_cost(catalog.model("llama-3.1-8b"), Media(images=1))
    with pytest.raises(TokenprintError, match="no video"):
        media_cost(catalog.model("gemma-3-12b"), Media(videos=1))
    with pytest.raises(TokenprintError, match="image size"):
        media_cost(catalog.model("qwen3-vl-8b"), Media(images=1, image_px=(0, 10)))
    with pytest.raises(TokenprintError, match="video length"):
        media_cost(catalog.model("qwen3-vl-8b"), Media(videos=1, video_seconds=-1.0))
    assert media_cost(catalog.model("llama-3.1-8b"), Media()).tokens == 0


def test_encoder_flops_add_to_the_prefill_compute(catalog):
    m, g = catalog.model("qwen3-vl-8b"), catalog.gpu("h100-sxm")
    shape = ShapeArrays.of([m], ["bf16"])
    hw = hardware_arrays([g], ["bf16"])
    prof = ProfileArrays.from_values(resolve_profile(g, catalog).values)
    enc = 5e12
    plain = pass_time(shape, hw, prof, 4.0, 1000.0, 0.0, 2.0)
    with_enc = pass_time(shape, hw, prof, 4.0, 1000.0, 0.0, 2.0, enc)
    expected = 4 * enc / 2 / (hw.peak_flops * prof.eff_compute)
    assert np.allclose(with_enc.compute_s - plain.compute_s, expected)
    # compute-bound prefill: the whole difference shows in the pass time
    assert np.allclose(with_enc.total_s - plain.total_s, expected)


def test_predict_records_with_an_image(catalog):
    m, g = catalog.model("qwen3-vl-8b"), catalog.gpu("h100-sxm")
    text = predict_records(catalog, m, g, [1], 64, 128)[0]
    img = predict_records(catalog, m, g, [1], 64, 128, media=Media(images=1))[0]
    assert img["media_tokens"] == 1024 and img["media"] == "1 image 1024×1024"
    assert img["encoder_flops"] == pytest.approx(media_cost(m, Media(images=1)).encoder_flops)
    # the ViT pass alone, compute-bound, at the profile's efficiency
    prof = resolve_profile(g, catalog).values
    vit_s = img["encoder_flops"] / (g.fp16_tflops.value * 1e12 * prof["eff_compute"])
    assert img["ttft_s"] > text["ttft_s"] + vit_s       # and 1,024 more prompt tokens
    assert img["max_batch_fits"] < text["max_batch_fits"]
    assert "media" not in text


def _run(args: list[str]) -> tuple[int, str]:
    from tokenprint.cli.main import main

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main(args)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_cli_predict_images():
    code, text = _run(["predict", "--model", "qwen3-vl-8b", "--gpu", "h100-sxm", "--batch", "1",
                       "--images", "1", "--image-size", "512x512", "--json"])
    assert code == 0, text
    rec = json.loads(text)[0]
    assert rec["media_tokens"] == 256 and rec["input_len"] == 512
    code, text = _run(["predict", "--model", "qwen3-vl-8b", "--gpu", "h100-sxm", "--images", "1",
                       "--image-size", "512by512"])
    assert code == 2 and "--image-size '512by512' is invalid" in text
    code, text = _run(["predict", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--videos",
                       "1"])
    assert code == 2 and "text-only" in text and len(text.strip().splitlines()) == 1


def test_mlenergy_v3_multimodal_rows_load(catalog, shared_data):
    from tokenprint.predict.datasets import load_mlenergy_v3

    pts = load_mlenergy_v3(
        shared_data / "calibration" / "mlenergy_v3_h100" / "mlenergy_v3_h100_configs.csv",
        catalog)
    t = pts.table
    img = t[(t.task == "image-chat") & (t.model == "qwen3-vl-8b")]
    vid = t[(t.task == "video-chat") & (t.model == "qwen3-vl-8b")]
    assert len(img) and len(vid)
    assert (img.input_len == 64 + 1024).all() and (img.encoder_flops > 0).all()
    assert (vid.input_len == 64 + 440).all()
    assert (t[t.task == "gpqa"].encoder_flops == 0).all()
    # only models without a vision encoder in the catalog are refused: under 10 % of rows
    assert pts.n_skipped <= 0.1 * (len(t) + pts.n_skipped)
    assert "1 image 1024×1024" in pts.source
