"""Cost of an LRP explanation relative to a plain gradient pass, measured on this machine.

Times, interleaved in one run (so that load on the machine affects every method alike):

* ``gradient``        x.requires_grad_(); model(x)[target].sum().backward()  (parameters
                      require grad, as in a user's model: the usual "gradient pass")
* ``gradient (input only)``  the same with torch.autograd.grad w.r.t. x only
* ``lrp epsilon-plus`` and ``lrp alpha2-beta1``: sciexplain.explain(...)

on a VGG-like CNN (6 conv layers, batch 32, 64x64 RGB) and an EEG-style Conv1d network
(batch 64, 32 channels x 500 samples). Peak memory is measured per method in a fresh
subprocess (the kernel's high-water mark of resident memory above the size just before the call).

Usage: python benchmarks/bench_lrp.py [--repeats 15] [--write]   (--write updates README.md)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def vgg_like() -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.Conv2d(o, o, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2)]
    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                         nn.Linear(128 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10)).eval()


class EEGConvNet(nn.Module):
    def __init__(self, n_channels=32, n_times=500, n_classes=2):
        super().__init__()
        self.temporal = nn.Conv1d(n_channels, 40, 25, padding=12)
        self.spatial = nn.Conv1d(40, 40, 1)
        self.pool = nn.AvgPool1d(25, 25)
        self.conv = nn.Conv1d(40, 40, 5, padding=2)
        self.out = nn.Linear(40 * (n_times // 25), n_classes)

    def forward(self, x):
        h = torch.relu(self.spatial(torch.relu(self.temporal(x))))
        h = self.pool(h)
        h = torch.relu(self.conv(h))
        return self.out(h.flatten(1))


CASES = {
    "vgg-like CNN (32x3x64x64)": (vgg_like, (32, 3, 64, 64)),
    "EEG Conv1d (64x32x500)": (lambda: EEGConvNet().eval(), (64, 32, 500)),
}


def methods(model, x, target):
    import sciexplain as sx

    def grad_full():
        xx = x.clone().requires_grad_(True)
        model(xx)[torch.arange(len(x)), target].sum().backward()
        model.zero_grad(set_to_none=True)

    def grad_input():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xx)[torch.arange(len(x)), target].sum(), xx)

    ex_plus = sx.Explainer(model, preset="epsilon-plus")
    ex_ab = sx.Explainer(model, preset="alpha2-beta1")
    return {
        "gradient": grad_full,
        "gradient (input only)": grad_input,
        "lrp epsilon-plus": lambda: ex_plus.explain(x, target),
        "lrp alpha2-beta1": lambda: ex_ab.explain(x, target),
    }


def setup(case: str):
    torch.manual_seed(0)
    make, shape = CASES[case]
    model = make()
    x = torch.randn(*shape).clamp(min=-2, max=2)
    # a fixed target: no forward pass before measuring, so the peak memory is the method's own
    target = torch.arange(shape[0]) % 2
    return model, x, target


def time_case(case: str, repeats: int) -> dict[str, list[float]]:
    model, x, target = setup(case)
    fns = methods(model, x, target)
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_in_this_process(case: str, method: str) -> float:
    """Peak resident memory of one call above the resident size just before it, in MB.

    Uses the kernel's high-water mark of this process (VmHWM), reset just before the call by
    writing 5 to /proc/self/clear_refs (getrusage's ru_maxrss is not usable here: Linux carries
    it over from the parent process)."""
    import gc
    m, x, t = setup(case)
    fn = methods(m, x, t)[method]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - base) / 1024


def peak_memory(case: str, method: str) -> float:
    """Peak extra resident memory (MB) of one call, in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_lrp as b; "
            f"print(b.measure_in_this_process({case!r}, {method!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/README.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = []
    for case in CASES:
        times = time_case(case, args.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        mem = {k: peak_memory(case, k) for k in times}
        for k in times:
            rows.append({"case": case, "method": k, "median_s": med[k], "ratio": med[k] / med["gradient"],
                         "ratio_input_grad": med[k] / med["gradient (input only)"],
                         "peak_mb": mem[k], "mem_ratio": mem[k] / max(mem["gradient"], 1e-9)})
    header = ("| case | method | median time (s) | x gradient | x input-gradient | peak extra memory (MB) "
              "| x gradient memory |\n|---|---|---|---|---|---|---|")
    lines = [header] + [f"| {r['case']} | {r['method']} | {r['median_s']:.4f} | {r['ratio']:.2f} | "
                        f"{r['ratio_input_grad']:.2f} | {r['peak_mb']:.0f} | {r['mem_ratio']:.2f} |" for r in rows]
    table = "\n".join(lines)
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
           f"{args.repeats} interleaved repeats, {time.strftime('%Y-%m-%d')}")
    print(table)
    print(env)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_lrp.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    if args.write:
        readme = HERE / "README.md"
        text = readme.read_text() if readme.exists() else "# Benchmarks\n"
        start, end = "<!-- bench_lrp:start -->", "<!-- bench_lrp:end -->"
        block = f"{start}\n{table}\n\n{env}\n{end}"
        if start in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text += "\n" + block + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
