"""Unit conversion constants: the one place where units change.

Inside tokenprint every quantity carries its unit in its name (``energy_j``, ``carbon_g``,
``duration_s``); conversion happens only at the edges (CLI, files) with these constants.
"""

J_PER_KWH = 3.6e6
S_PER_HOUR = 3600.0
S_PER_DAY = 86_400.0
S_PER_YEAR = 365.25 * S_PER_DAY
MM2_PER_CM2 = 100.0

# mxfp4: 4-bit elements plus one 8-bit scale per 32 (OCP Microscaling spec) = 4.25 bits;
# nvfp4: 4-bit elements plus one FP8 scale per 16 (NVIDIA's NVFP4) = 4.5 bits
DTYPE_BYTES: dict[str, float] = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1,
                                 "mxfp4": 4.25 / 8, "nvfp4": 4.5 / 8}
