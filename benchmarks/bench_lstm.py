"""Cost of LRP on LSTM text classifiers relative to one gradient pass of the original model.

Text-classifier-sized models (batch 32, 100 time steps, 50-d inputs as from GloVe-50, hidden
64, two classes, readout of the last step; the bidirectional one reads the forward direction's
last and the backward direction's first step). Times, interleaved in one run:

* ``gradient``               the original model with ``nn.LSTM`` (torch's fused kernel):
                             ``model(x)[target].sum().backward()`` with parameters requiring grad
* ``gradient (input only)``  the same with ``torch.autograd.grad`` w.r.t. x only
* ``unrolled forward``       the unrolled module sciexplain swaps in, forward only (the floor that
                             Python's per-step overhead sets)
* ``unrolled forward, input projections precomputed``  the same cell with ``x_t W_ih`` for all
                             steps in one matmul: what that would save. It is NOT used, because
                             the joint epsilon rule over ``cat([x_t, h])`` would no longer be exact
* ``lrp (Arras et al.)``     ``sx.explain`` with Epsilon(1e-3) on the linear maps and sums
* ``fused loop of the same rule, no engine (prototype)``: the rule written as one plain torch
                             loop (not part of the library): what a fused leaf propagator for
                             whole LSTM layers would cost; checked to give the engine's relevance

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
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
BATCH, STEPS, DIM, HIDDEN, CLASSES = 32, 100, 50, 64, 2
EPS = 1e-3


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


def precomputed_forward(rnn: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """The unrolled LSTM with the input projections of all steps in one matmul (not used)."""
    outs = []
    for d in range(2 if rnn.bidirectional else 1):
        sfx = "_reverse" if d else ""
        w_ih, w_hh = getattr(rnn, f"weight_ih_l0{sfx}"), getattr(rnn, f"weight_hh_l0{sfx}")
        b = getattr(rnn, f"bias_ih_l0{sfx}") + getattr(rnn, f"bias_hh_l0{sfx}")
        xp = F.linear(x, w_ih, b).unbind(1)
        h = x.new_zeros(x.shape[0], HIDDEN)
        c = torch.zeros_like(h)
        hs = [None] * x.shape[1]
        for t in (reversed(range(x.shape[1])) if d else range(x.shape[1])):
            i, f, g, o = (xp[t] + F.linear(h, w_hh)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs[t] = h
        outs.append(torch.stack(hs, 1))
    return torch.cat(outs, -1)


@torch.no_grad()
def fused_arras_lrp(model: TextLSTM, x: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The same rule (Arras et al. 2017) as one plain torch loop per direction, without the
    engine: a prototype of what a fused leaf propagator for whole LSTM layers would cost. The
    benchmark checks that it gives the engine's relevance."""
    rnn, B, T = model.rnn, x.shape[0], x.shape[1]
    H = HIDDEN
    D = 2 if rnn.bidirectional else 1
    stab = lambda z: z + eps * torch.where(z >= 0, 1.0, -1.0)  # noqa: E731
    saved, outs = [], []
    for d in range(D):
        sfx = "_reverse" if d else ""
        w_ih, w_hh = getattr(rnn, f"weight_ih_l0{sfx}"), getattr(rnn, f"weight_hh_l0{sfx}")
        b = getattr(rnn, f"bias_ih_l0{sfx}") + getattr(rnn, f"bias_hh_l0{sfx}")
        xp = F.linear(x, w_ih, b)
        h, c = x.new_zeros(B, H), x.new_zeros(B, H)
        hs, cs, gates = [None] * T, [None] * T, [None] * T
        for t in (reversed(range(T)) if d else range(T)):
            z = xp[:, t] + F.linear(h, w_hh)
            i, f, o = torch.sigmoid(torch.cat([z[:, :2 * H], z[:, 3 * H:]], 1)).chunk(3, 1)
            g = torch.tanh(z[:, 2 * H:3 * H])
            gates[t] = (i, f, g, z[:, 2 * H:3 * H], h, c)
            c = f * c + i * g
            h = o * torch.tanh(c)
            hs[t], cs[t] = h, c
        saved.append((w_ih, w_hh, gates, cs))
        outs.append(hs)
    feat = outs[0][-1] if D == 1 else torch.cat([outs[0][-1], outs[1][0]], 1)
    logits = model.fc(feat)
    R_logit = torch.zeros_like(logits)
    rows = torch.arange(B)
    R_logit[rows, target] = logits[rows, target]
    R_feat = feat * ((R_logit / stab(logits)) @ model.fc.weight)
    R_x = torch.zeros_like(x)
    for d in range(D):
        w_ih, w_hh, gates, cs = saved[d]
        w_g = torch.cat([w_ih[2 * H:3 * H], w_hh[2 * H:3 * H]], 1)
        order = list(reversed(range(T))) if d else list(range(T))
        R_h = R_feat[:, d * H:(d + 1) * H]
        R_c = torch.zeros_like(R_h)
        for t in reversed(order):
            i, f, g, zg, h_prev, c_prev = gates[t]
            s = (R_h + R_c) / stab(cs[t])
            R_c, R_g = f * c_prev * s, i * g * s
            R_a = torch.cat([x[:, t], h_prev], 1) * ((R_g / stab(zg)) @ w_g)
            R_x[:, t] += R_a[:, :DIM]
            R_h = R_a[:, DIM:]
    return R_x


def setup(case: str):
    torch.manual_seed(0)
    model = TextLSTM(CASES[case]).eval()
    x = torch.randn(BATCH, STEPS, DIM) * 0.5
    target = torch.arange(BATCH) % CLASSES
    return model, x, target


def methods(model, x, target):
    import sciexplain as sx
    from sciexplain.recurrent import unroll

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

    def forward_precomputed():
        with torch.no_grad():
            precomputed_forward(model.rnn, x)

    ex = sx.Explainer(model, preset={nn.Linear: sx.rules.Epsilon(EPS), "op:add": sx.rules.Epsilon(EPS)})
    return {
        "gradient": grad_full,
        "gradient (input only)": grad_input,
        "unrolled forward": forward_unrolled,
        "unrolled forward, input projections precomputed": forward_precomputed,
        "lrp (Arras et al.)": lambda: ex.explain(x, target),
        "fused loop of the same rule, no engine (prototype)": lambda: fused_arras_lrp(model, x, target),
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


def profile_case(case: str, top: int = 12) -> tuple[dict[str, float], str]:
    """cProfile of one LRP call: cumulative seconds per engine phase, and the listing of the
    sciexplain functions with the largest cumulative time (profiling inflates Python-heavy
    parts; the shares are indicative)."""
    model, x, target = setup(case)
    fn = methods(model, x, target)["lrp (Arras et al.)"]
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


def phase_text(case: str, phases: dict[str, float]) -> str:
    total = phases.get("total") or sum(v for k, v in phases.items() if k != "total")
    parts = [f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in phases.items() if k != "total"]
    return f"One LRP call on the {case} under cProfile, {total:.2f} s: " + "; ".join(parts) + "."


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
        R = methods(model, x, target)["lrp (Arras et al.)"]()
        gap = float((fused_arras_lrp(model, x, target) - torch.as_tensor(R.values)).abs().max())
        checks.append(f"{case}: max |fused - engine| = {gap:.1e} (max |R| {float(abs(R).max()):.1e})")
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
    phases, listing = profile_case(profile_case_name)
    breakdown = phase_text(profile_case_name, phases)
    print(breakdown)
    check_text = "The fused prototype gives the engine's relevance: " + "; ".join(checks) + "."
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
