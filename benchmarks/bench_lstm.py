"""Cost of LRP on LSTM text classifiers relative to one gradient pass of the original model.

Text-classifier-sized models (batch 32, 100 time steps, 50-d inputs as from GloVe-50, hidden
64, two classes, readout of the last step; the bidirectional one reads the forward direction's
last and the backward direction's first step). Times, interleaved in one run:

* ``gradient``               the original model with ``nn.LSTM`` (torch's fused kernel):
                             ``model(x)[target].sum().backward()`` with parameters requiring grad
* ``gradient (input only)``  the same with ``torch.autograd.grad`` w.r.t. x only
* ``lrp (Arras et al.), fused LSTM layers``  ``sx.explain`` with Epsilon(1e-3) on the linear
                             maps and sums: the default, each LSTM layer and direction one unit
                             (``sciexplain.canonizers.recurrent_fused``: torch's kernel forward, whole-sequence
                             recomputation of the gates, a four-operation loop per step)
* ``lrp (Arras et al.), unrolled operation by operation``  the same rule with
                             ``RecurrentUnrolling(fused=False)``: every operation of every step on
                             the tape, as presets that reach inside the cell need
* ``unrolled forward``       the unrolled module alone, forward only (the floor that Python's
                             per-step overhead sets for the operation-by-operation path)

The two LRP paths are checked to give the same relevance.

A cProfile run of one LRP call splits its time into recording, plan and relevance walk;
``--profile`` also prints the listing.

Usage: python benchmarks/bench_lstm.py [--repeats 7] [--threads 2] [--write] [--profile]
(--write updates the bench_lstm section of benchmarks/README.md)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
BATCH, STEPS, DIM, HIDDEN, CLASSES = 32, 100, 50, 64, 2
EPS = 1e-3
FUSED = "lrp (Arras et al.), fused LSTM layers"
OP_BY_OP = "lrp (Arras et al.), unrolled operation by operation"


class TextLSTM(nn.Module):
    def __init__(self, bidirectional: bool):
        super().__init__()
        self.rnn = nn.LSTM(DIM, HIDDEN, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(HIDDEN * (2 if bidirectional else 1), CLASSES)
        self.bidirectional = bidirectional

    def forward(self, x):
        out, _ = self.rnn(x)
        if self.bidirectional:
            feat = torch.cat([out[:, -1, :HIDDEN], out[:, 0, HIDDEN:]], -1)
        else:
            feat = out[:, -1]
        return self.fc(feat)


CASES = {
    "LSTM (32x100x50, hidden 64)": False,
    "BiLSTM (32x100x50, hidden 64)": True,
}


def setup(case: str):
    torch.manual_seed(0)
    model = TextLSTM(CASES[case]).eval()
    x = torch.randn(BATCH, STEPS, DIM) * 0.5
    target = torch.arange(BATCH) % CLASSES
    return model, x, target


def methods(model, x, target):
    import sciexplain as sx
    from sciexplain.canonizers.recurrent import RecurrentUnrolling, unroll

    def grad_full():
        xx = x.clone().requires_grad_(True)
        model(xx)[torch.arange(len(x)), target].sum().backward()
        model.zero_grad(set_to_none=True)

    def grad_input():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xx)[torch.arange(len(x)), target].sum(), xx)

    unrolled = unroll(model.rnn)

    def forward_unrolled():
        with torch.no_grad():
            unrolled(x)

    preset = {nn.Linear: sx.rules.Epsilon(EPS), "op:add": sx.rules.Epsilon(EPS)}
    fused = sx.Explainer(model, preset=preset)
    op_by_op = sx.Explainer(model, preset=preset, canonizers=[RecurrentUnrolling(fused=False)])
    return {
        "gradient": grad_full,
        "gradient (input only)": grad_input,
        FUSED: lambda: fused.explain(x, target),
        OP_BY_OP: lambda: op_by_op.explain(x, target),
        "unrolled forward": forward_unrolled,
    }


def time_case(case: str, repeats: int) -> dict[str, list[float]]:
    model, x, target = setup(case)
    fns = methods(model, x, target)
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved, so load on the machine hits every method alike
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


PHASES = {"recording (forward pass on the tape)": ("forward.py", "record_forward"),
          "plan (kinds, gates, rules)": ("plan.py", "make_plan"),
          "relevance walk": ("walk.py", "lrp_walk")}


def profile_case(case: str, method: str, top: int = 12) -> tuple[dict[str, float], str]:
    """cProfile of one LRP call: cumulative seconds per engine phase, and the listing of the
    sciexplain functions with the largest cumulative time (profiling inflates Python-heavy
    parts; the shares are indicative)."""
    model, x, target = setup(case)
    fn = methods(model, x, target)[method]
    fn()
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    phases = {"total": 0.0}
    for (fname, _, func), (_, _, _, cum, _) in stats.stats.items():
        if fname.endswith("engine.py") and func == "explain":
            phases["total"] = max(phases["total"], cum)
        for label, (file, name) in PHASES.items():
            if fname.endswith(file) and func == name:
                phases[label] = phases.get(label, 0.0) + cum
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(r"sciexplain", top)
    return phases, buf.getvalue()


def phase_text(case: str, method: str, phases: dict[str, float]) -> str:
    total = phases.get("total") or sum(v for k, v in phases.items() if k != "total")
    parts = [f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in phases.items() if k != "total"]
    return f"One call of {method} on the {case} under cProfile, {total:.2f} s: " + "; ".join(parts) + "."


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/README.md")
    ap.add_argument("--profile", action="store_true", help="print a cProfile breakdown of one LRP call")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2, as in CI)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    checks = []
    for case in CASES:
        model, x, target = setup(case)
        fns = methods(model, x, target)
        R, R_ops = fns[FUSED](), fns[OP_BY_OP]()
        gap = float(abs(R - R_ops).max())
        checks.append(f"{case}: max |fused - unrolled| = {gap:.1e} (max |R| {float(abs(R).max()):.1e})")
        times = time_case(case, args.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}
        for k in times:
            rows.append({"case": case, "method": k, "median_s": med[k], "min_s": low[k],
                         "ratio": med[k] / med["gradient"], "ratio_min": low[k] / low["gradient"],
                         "ratio_input_grad": med[k] / med["gradient (input only)"]})
    header = ("| case | method | median time (s) | x gradient (median) | x gradient (fastest runs) "
              "| x input-gradient (median) |\n|---|---|---|---|---|---|")
    lines = [header] + [f"| {r['case']} | {r['method']} | {r['median_s']:.4f} | {r['ratio']:.2f} | "
                        f"{r['ratio_min']:.2f} | {r['ratio_input_grad']:.2f} |" for r in rows]
    table = "\n".join(lines)
    load = os.getloadavg()[0]
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
           f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
           f"{load:.1f} at the end, {args.repeats} interleaved repeats, {time.strftime('%Y-%m-%d')}")
    print(table)
    print(env)
    profile_case_name = "LSTM (32x100x50, hidden 64)"
    phases, listing = profile_case(profile_case_name, FUSED)
    breakdown = phase_text(profile_case_name, FUSED, phases)
    print(breakdown)
    check_text = "The fused layers give the unrolled operations' relevance: " + "; ".join(checks) + "."
    print(check_text)
    if args.profile:
        print(listing)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_lstm.json").write_text(json.dumps({"env": env, "rows": rows, "profile": phases},
                                                                 indent=2))
    if args.write:
        readme = HERE / "README.md"
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        start, end = "<!-- bench_lstm:start -->", "<!-- bench_lstm:end -->"
        block = f"{start}\n{table}\n\n{env}\n\n{breakdown}\n\n{check_text}\n{end}"
        if start in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text += ("\n## LRP on LSTM text classifiers\n\n`python benchmarks/bench_lstm.py --write`. "
                     "Design target: LRP at most 1.5x one gradient pass of the original `nn.LSTM` model.\n\n"
                     + block + "\n")
        readme.write_text(text)


if __name__ == "__main__":
    main()
