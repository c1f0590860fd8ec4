"""OpenAI-compatible gateway with per-request carbon, a ledger, metrics and carbon routing."""
