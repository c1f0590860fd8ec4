"""Carbon-optimal deployment planning under latency targets, multi-region and time shifting."""

from tokenprint.plan.planner import PlanInputs, plan

__all__ = ["PlanInputs", "plan"]
