"""Carbon-optimal deployment planning under latency targets, multi-region and time shifting."""

from tokenprint.plan.answer import PlanAnswer
from tokenprint.plan.planner import plan
from tokenprint.plan.rows import PlanInputs

__all__ = ["PlanAnswer", "PlanInputs", "plan"]
