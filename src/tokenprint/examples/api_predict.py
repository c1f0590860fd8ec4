"""Predict latency, throughput and energy per token from Python (what `tokenprint predict` does).

Run: python api_predict.py
"""

from tokenprint.catalog import load_catalog
from tokenprint.predict import predict_records
from tokenprint.predict.media import Media

cat = load_catalog()
model, gpu = cat.model("llama-3.1-8b"), cat.gpu("h100-sxm")

# a static batch of 512-token prompts and 128-token answers, on one H100 under vLLM (late 2025)
for rec in predict_records(cat, model, gpu, batches=[1, 16, 64], input_len=512, output_len=128):
    tpot_ms = 1e3 * (rec["tpot_s"] or 0.0)   # predicted records always carry it
    print(f"batch {rec['batch']:>3}: {tpot_ms:5.1f} ms per token, "
          f"{rec['energy_per_output_token_j']:.3f} J per output token "
          f"({rec['energy_per_output_token_j_low']:.3f}–"
          f"{rec['energy_per_output_token_j_high']:.3f}), profile {rec['profile']}")

# the same question for a multimodal model with one 1280 × 720 image in every prompt
vl = predict_records(cat, cat.model("qwen3-vl-8b"), gpu, [8], 64, 128,
                     media=Media(images=1, image_px=(1280, 720)))[0]
print(f"qwen3-vl-8b, one image ({vl['media_tokens']} prompt tokens): "
      f"time to first token {1e3 * (vl['ttft_s'] or 0.0):.0f} ms")
