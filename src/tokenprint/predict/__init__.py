"""Analytical performance and power model, calibration and validation."""

from tokenprint.predict.params import MODEL_VERSION
from tokenprint.predict.predictor import predict_records, resolve_dtype

__all__ = ["MODEL_VERSION", "predict_records", "resolve_dtype"]
