"""Reports: the seed study re-run, its figures and its self-contained HTML page."""
