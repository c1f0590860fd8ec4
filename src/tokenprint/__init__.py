"""tokenprint: measure, predict and cut the carbon footprint of serving LLMs."""

from tokenprint.errors import TokenprintError

__version__ = "0.1.0"

__all__ = ["TokenprintError", "__version__"]
