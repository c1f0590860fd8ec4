"""Carbon of deployments from the metrics they already export: ``watch`` (live sidecar)."""
