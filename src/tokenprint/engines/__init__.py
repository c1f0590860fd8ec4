"""Inference engines behind one interface: transformers, vLLM, OpenAI-compatible HTTP."""

from tokenprint.engines.base import ENGINES, Engine, OutOfMemory, RunResult

__all__ = ["ENGINES", "Engine", "OutOfMemory", "RunResult"]
