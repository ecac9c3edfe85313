"""``python -m train report``: every experiment of the original, then ``REPORT.md`` beside the results.

plan.py says which experiments run at which settings, runner.py runs (or reuses) them,
render.py writes REPORT.md's parts, claims.py and findings.py the verdicts on the original's claims,
frameworks.py the PyTorch twins of JAX runs and the cross-framework section.
"""

from train.report.plan import PARTS, Plan, make_plan, parse_parts, resolve_data, select_parts
from train.report.runner import _run_or_reuse, add_parser, cmd_report, run_report
from train.errors import UsageError

__all__ = ["PARTS", "Plan", "UsageError", "_run_or_reuse", "add_parser", "cmd_report", "make_plan", "parse_parts",
           "resolve_data", "run_report", "select_parts"]
