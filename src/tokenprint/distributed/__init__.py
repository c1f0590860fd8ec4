"""Running sweeps and plans on a Ray cluster (optional extra ``tokenprint[ray]``)."""

from tokenprint.executor import EXECUTORS, check_executor

__all__ = ["EXECUTORS", "check_executor"]
