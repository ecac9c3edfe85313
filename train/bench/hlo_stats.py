"""What a compiled program launches per training step, read from its optimised HLO text.

On a GPU every top-level instruction of a computation that is not bookkeeping (parameters, tuples,
bitcasts, constants) is one kernel or library call: a fusion, a cuBLAS/cuDNN custom call, a copy
or transpose that layout assignment could not fold away, a collective. For a fused period (one
``while`` loop of steps) the step is the loop's body, so its count is the kernels per step; for a
one-step program it is the entry computation.
"""

from __future__ import annotations

import re
from collections import Counter

# Instructions that move no data and launch nothing.
_FREE = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant", "after-all",
         "partition-id", "replica-id", "opt-barrier"}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_COMP = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*(\([^\n]*\))?\s*->[^\n]*\{\s*$", re.M)
# `%name = type[...]{...} opcode(` or `name = (tuple) opcode(`; the opcode is the word before "(".
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*.*?\s([a-z][a-z\-]*)\((.*)$")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_BODY = re.compile(r"\bbody=%?([\w.\-]+)")


def computations(text: str) -> dict[str, list[str]]:
    """Each computation's instruction lines, by name; the entry's under ``"ENTRY"`` too."""
    out: dict[str, list[str]] = {}
    starts = list(_COMP.finditer(text))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        lines = [ln for ln in text[m.end():end].splitlines() if "=" in ln]
        out[m[2]] = lines
        if m[1]:
            out["ENTRY"] = lines
    return out


def op_counts(lines: list[str]) -> dict[str, int]:
    """Kernels (every instruction that is not bookkeeping), and of them fusions, custom calls (by
    target), copies, transposes, loops and collectives (in all, and by kind)."""
    ops: Counter = Counter()
    targets: Counter = Counter()
    for ln in lines:
        m = _INSTR.match(ln)
        if not m or m[1] in _FREE:
            continue
        ops[m[1]] += 1
        if m[1] == "custom-call":
            t = _TARGET.search(ln)
            targets[t[1] if t else "?"] += 1
    base = {op.removesuffix("-start") for op in ops if not op.endswith("-done")}
    return {"kernels": sum(n for op, n in ops.items() if not op.endswith("-done")),
            "fusions": ops["fusion"], "custom_calls": ops["custom-call"],
            "copies": ops["copy"] + ops["copy-start"], "transposes": ops["transpose"],
            "loops": ops["while"],
            "collectives": sum(ops[c] + ops[c + "-start"] for c in COLLECTIVES),
            "collective_ops": {c: n for c in COLLECTIVES if (n := ops[c] + ops[c + "-start"])},
            "custom_call_targets": dict(targets),
            "other": sorted(op for op in base if op not in (
                "fusion", "custom-call", "copy", "transpose", "while", *COLLECTIVES))}


def step_ops(text: str, *, fused: bool) -> dict:
    """Kernel counts of one training step: for a fused period, the body of the entry's largest
    ``while`` (loops inside a step, an RNN's time steps, count as one kernel each); for a
    one-step program, the entry computation. ``"where"`` says which."""
    comps = computations(text)
    bodies = [b for ln in comps.get("ENTRY", []) for b in _BODY.findall(ln) if b in comps]
    if fused and bodies:
        body = max(bodies, key=lambda b: len(comps[b]))
        return {"where": f"loop body {body}", **op_counts(comps[body])}
    return {"where": "entry", **op_counts(comps.get("ENTRY", []))}
