"""Cost of an LRP explanation relative to a plain gradient pass, measured on this machine.

Times, interleaved in one run (so that load on the machine affects every method alike):

* ``gradient``        x.requires_grad_(); model(x)[target].sum().backward()  (parameters
                      require grad, as in a user's model: the usual "gradient pass")
* ``gradient (input only)``  the same with torch.autograd.grad w.r.t. x only
* ``lrp epsilon``, ``lrp epsilon-plus`` and ``lrp alpha2-beta1``: sciexplain.explain(...)
* ``captum lrp epsilon`` and ``captum lrp epsilon-plus``: captum.attr.LRP on a copy of the
  same model, when captum is installed, with the rules set as described in
  :func:`captum_rules` (captum's LRP has no alpha2-beta1 rule)

on the families of issue 22: a VGG-like CNN (6 conv layers, batch 32, 64x64 RGB), a
ResNet-18-like network (torch only, no torchvision; BatchNorm with random running statistics;
batch 8, 128x128), a MobileNetV3-small-like block stack (inverted residuals, depthwise
convolutions, squeeze-and-excitation, hardswish; batch 8, 160x160), braindecode's EEGNetv4
(batch 64, 22 channels x 500 samples) and EEGInception (batch 64, 8 channels x 512 samples),
and an EEG-style Conv1d network (batch 64, 32 channels x 500 samples); all with random weights.
zennit is not run: it imports torchvision at import time, which cannot be imported beside
this machine's CPU build of torch. Peak memory is measured per method in a fresh
subprocess (the kernel's high-water mark of resident memory above the size just before the call).
Besides wall-clock time the process CPU time of each call is recorded (``time.process_time``,
both threads together): on a machine shared with other jobs it is the steadier of the two.

Usage: python benchmarks/bench_lrp.py [--repeats 15] [--rounds 1] [--threads 1] [--cases vgg,eegnet] [--write]
(--rounds N repeats the whole interleaved measurement N times and reports the medians of the
per-round ratios; --write updates README.md)
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


class _FunctionalFlatten(nn.Module):
    """``seq`` with its nn.Flatten done functionally: captum's LRP needs a rule on every leaf
    module and breaks on a Flatten module ("hook has changed the size of value")."""

    def __init__(self, seq: nn.Sequential):
        super().__init__()
        cut = next(i for i, m in enumerate(seq) if isinstance(m, nn.Flatten))
        self.features, self.head = seq[:cut], seq[cut + 1:]

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def captum_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` captum's LRP can run on (same weights, same function)."""
    import copy
    twin = copy.deepcopy(model)
    if type(twin) is nn.Sequential and any(isinstance(m, nn.Flatten) for m in twin):
        twin = _FunctionalFlatten(twin)
    return twin.eval()


def captum_rules(model: nn.Module, plus: bool) -> list[str]:
    """Set captum LRP rules on ``model`` (a :func:`captum_twin`): what captum does by default
    (EpsilonRule on its supported layers), plus EpsilonRule on Conv1d/AvgPool1d, which it has no
    default for. ``plus``: Alpha1_Beta0_Rule (z+ with ``w^+`` on the raw input) on the
    convolutions, as epsilon-plus. Returns one line per rule set, for the report."""
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule
    done = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            m.rule = Alpha1_Beta0_Rule() if plus else EpsilonRule()
        elif isinstance(m, (nn.Linear, nn.AvgPool1d, nn.AvgPool2d)):
            m.rule = EpsilonRule()
        else:
            continue
        done.append(f"{name}: {type(m).__name__} -> {type(m.rule).__name__}")
    return done


class _Basic(nn.Module):
    """ResNet's basic block: two 3x3 conv-BatchNorm pairs and a (projected) shortcut."""

    def __init__(self, i: int, o: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
        self.c2, self.b2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
        self.relu = nn.ReLU()
        self.down = None
        if stride != 1 or i != o:
            self.down = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        h = self.b2(self.c2(self.relu(self.b1(self.c1(x)))))
        return self.relu(h + (x if self.down is None else self.down(x)))


class ResNet18Like(nn.Module):
    """torchvision's ResNet-18 layout (7x7 stem, max pooling, 4 stages of 2 basic blocks)."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, c = [], 64
        for o, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_Basic(c, o, stride), _Basic(o, o, 1)]
            c = o
        self.layers = nn.Sequential(*blocks)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(512, n_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class _SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int):
        super().__init__()
        self.pool, self.fc1, self.act = nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, r, 1), nn.ReLU()
        self.fc2, self.gate = nn.Conv2d(r, c, 1), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class _InvertedResidual(nn.Module):
    def __init__(self, i: int, e: int, o: int, k: int, stride: int, se: bool, act: str):
        super().__init__()
        A = nn.Hardswish if act == "hs" else nn.ReLU
        layers: list[nn.Module] = []
        if e != i:
            layers += [nn.Conv2d(i, e, 1, bias=False), nn.BatchNorm2d(e), A()]
        layers += [nn.Conv2d(e, e, k, stride, k // 2, groups=e, bias=False), nn.BatchNorm2d(e), A()]
        if se:
            layers.append(_SqueezeExcite(e, max(8, e // 4)))
        layers += [nn.Conv2d(e, o, 1, bias=False), nn.BatchNorm2d(o)]
        self.block, self.residual = nn.Sequential(*layers), stride == 1 and i == o

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3SmallLike(nn.Module):
    """MobileNetV3-small's block table (Howard et al. 2019): inverted residuals, depthwise
    convolutions, squeeze-and-excitation, hardswish."""

    CFG = [(16, 16, 16, 3, 2, True, "re"), (16, 72, 24, 3, 2, False, "re"), (24, 88, 24, 3, 1, False, "re"),
           (24, 96, 40, 5, 2, True, "hs"), (40, 240, 40, 5, 1, True, "hs"), (40, 240, 40, 5, 1, True, "hs"),
           (40, 120, 48, 5, 1, True, "hs"), (48, 144, 48, 5, 1, True, "hs"), (48, 288, 96, 5, 2, True, "hs"),
           (96, 576, 96, 5, 1, True, "hs"), (96, 576, 96, 5, 1, True, "hs")]

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(*[_InvertedResidual(*row) for row in self.CFG])
        self.head = nn.Sequential(nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(576, 1024), nn.Hardswish(),
                                  nn.Linear(1024, n_classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def _random_bn(model: nn.Module) -> nn.Module:
    """Random running statistics (fresh BatchNorms are identities, which folding would hide)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def eegnet() -> nn.Module:
    import warnings
    from braindecode.models import EEGNetv4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _random_bn(EEGNetv4(n_chans=22, n_outputs=4, n_times=500, kernel_length=64))


def eeginception() -> nn.Module:
    import warnings
    from braindecode.models import EEGInception
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _random_bn(EEGInception(n_chans=8, n_outputs=2, n_times=512, sfreq=128, add_log_softmax=False))


CASES = {
    "vgg-like CNN (32x3x64x64)": (vgg_like, (32, 3, 64, 64)),
    "ResNet-18-like (8x3x128x128)": (lambda: _random_bn(ResNet18Like()), (8, 3, 128, 128)),
    "MobileNetV3-small-like (8x3x160x160)": (lambda: _random_bn(MobileNetV3SmallLike()), (8, 3, 160, 160)),
    "braindecode EEGNetv4 (64x22x500)": (eegnet, (64, 22, 500)),
    "braindecode EEGInception (64x8x512)": (eeginception, (64, 8, 512)),
    "EEG Conv1d (64x32x500)": (lambda: EEGConvNet().eval(), (64, 32, 500)),
}
#: short names for --cases
SHORT = dict(zip(("vgg", "resnet", "mobilenet", "eegnet", "eeginception", "eegconv"), CASES))


def methods(model, x, target, captum: bool = True, trial: bool = True):
    import sciexplain as sx

    def grad_full():
        xx = x.clone().requires_grad_(True)
        model(xx)[torch.arange(len(x)), target].sum().backward()
        model.zero_grad(set_to_none=True)

    def grad_input():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xx)[torch.arange(len(x)), target].sum(), xx)

    ex_eps = sx.Explainer(model, preset="epsilon")
    ex_plus = sx.Explainer(model, preset="epsilon-plus")
    ex_ab = sx.Explainer(model, preset="alpha2-beta1")
    out = {
        "gradient": grad_full,
        "gradient (input only)": grad_input,
        "lrp epsilon": lambda: ex_eps.explain(x, target),
        "lrp epsilon-plus": lambda: ex_plus.explain(x, target),
        "lrp alpha2-beta1": lambda: ex_ab.explain(x, target),
    }
    if not captum:
        return out
    try:
        from captum.attr import LRP
    except ImportError:  # captum is optional (the "bench" extra)
        return out
    def run_captum(twin, lrp, plus):
        captum_rules(twin, plus)  # captum deletes the rules after every call
        return lrp.attribute(x.clone().requires_grad_(True), target=target)

    for label, plus in (("captum lrp epsilon", False), ("captum lrp epsilon-plus", True)):
        try:  # captum's LRP runs on module-only networks; note where it does not
            twin = captum_twin(model)
            fn = (lambda twin=twin, lrp=LRP(twin), plus=plus: run_captum(twin, lrp, plus))
            if trial:  # (not before a memory measurement: the trial would set the high-water mark)
                fn()
        except Exception as err:  # noqa: BLE001 - any failure means "captum does not run here"
            CAPTUM_FAILED.setdefault(type(model).__name__, f"{type(err).__name__}: {str(err)[:160]}")
            continue
        out[label] = fn
    return out


#: model class -> why captum's LRP did not run on it
CAPTUM_FAILED: dict[str, str] = {}


def setup(case: str):
    torch.manual_seed(0)
    make, shape = CASES[case]
    model = make()
    x = torch.randn(*shape).clamp(min=-2, max=2)
    # a fixed target: no forward pass before measuring, so the peak memory is the method's own
    target = torch.arange(shape[0]) % 2
    return model, x, target


def time_case(case: str, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds per call, ``repeats`` interleaved calls of each method."""
    model, x, target = setup(case)
    fns = methods(model, x, target)
    for fn in fns.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():  # interleaved
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


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
    fn = methods(m, x, t, captum=method.startswith("captum"), trial=False)[method]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    fn()
    return (_status_kb("VmHWM") - base) / 1024


def peak_memory(case: str, method: str) -> float:
    """Peak extra resident memory (MB) of one call, in a fresh process."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_lrp as b; import torch; "
            f"torch.set_num_threads({torch.get_num_threads()}); "
            f"print(b.measure_in_this_process({case!r}, {method!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


#: captum method -> the sciexplain method with the same rules
CAPTUM_PAIRS = {"captum lrp epsilon": "lrp epsilon", "captum lrp epsilon-plus": "lrp epsilon-plus"}


def main() -> None:
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=1, help="independent interleaved rounds (medians reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    ap.add_argument("--cases", default=",".join(SHORT), help=f"comma-separated among {', '.join(SHORT)}")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/README.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows, captum_lines = [], []
    cases = [SHORT[c.strip()] for c in args.cases.split(",") if c.strip()]
    for case in cases:
        print(f"{case} ...", file=sys.stderr, flush=True)
        per_round = []
        for _ in range(args.rounds):
            wall, cpu = time_case(case, args.repeats)
            per_round.append(({k: statistics.median(v) for k, v in wall.items()},
                              {k: statistics.median(v) for k, v in cpu.items()}))
        names = list(per_round[0][0])
        mem = {k: float("nan") if args.no_memory else peak_memory(case, k) for k in names}

        def med(which: int, k: str, base: str | None = None) -> float:
            vals = [r[which][k] / (r[which][base] if base else 1.0) for r in per_round]
            return statistics.median(vals)

        for k in names:
            rows.append({"case": case, "method": k, "median_s": med(0, k), "ratio": med(0, k, "gradient"),
                         "ratio_input_grad": med(0, k, "gradient (input only)"),
                         "cpu_ratio": med(1, k, "gradient"),
                         "peak_mb": mem[k], "mem_ratio": mem[k] / max(mem["gradient"], 1e-9)})
        for cap, ours in CAPTUM_PAIRS.items():
            if cap in names:
                captum_lines.append(f"{case}: {cap} / {ours} = {med(0, cap, ours):.2f} (wall), "
                                    f"{med(1, cap, ours):.2f} (CPU)")
    header = ("| case | method | median time (s) | x gradient | x input-gradient | x gradient (CPU time) "
              "| peak extra memory (MB) | x gradient memory |\n|---|---|---|---|---|---|---|---|")
    lines = [header] + [f"| {r['case']} | {r['method']} | {r['median_s']:.4f} | {r['ratio']:.2f} | "
                        f"{r['ratio_input_grad']:.2f} | {r['cpu_ratio']:.2f} | {r['peak_mb']:.0f} | "
                        f"{r['mem_ratio']:.2f} |" for r in rows]
    table = "\n".join(lines)
    if captum_lines:
        rules_vgg = captum_rules(captum_twin(setup(SHORT["vgg"])[0]), plus=True)
        rules_eeg = captum_rules(captum_twin(setup(SHORT["eegconv"])[0]), plus=True)
        table += ("\n\ncaptum's LRP beside sciexplain's with the same rules (time ratio, > 1: captum slower):\n\n"
                  + "\n".join(f"- {line}" for line in captum_lines)
                  + "\n\nWhat ran in captum: EpsilonRule on Linear, AvgPool and (for `epsilon`) the convolutions, "
                    "Alpha1_Beta0_Rule on the convolutions for `epsilon-plus` (captum clamps the weights and "
                    "applies them to the raw, mixed-sign first-layer input, where sciexplain's z+ uses "
                    "x^+ w^+ + x^- w^-); the vgg-like network's Flatten module is done functionally in "
                    "captum's copy (captum fails on a Flatten module); ReLU passes the gradient; the EEG network's "
                    "functional `torch.relu` is not a module and is differentiated as it is. "
                    f"Rules set (epsilon-plus): vgg-like {'; '.join(rules_vgg)}. EEG {'; '.join(rules_eeg)}.")
    if CAPTUM_FAILED:
        table += ("\n\ncaptum's LRP did not run on: " + "; ".join(f"{k} ({v})" for k, v in CAPTUM_FAILED.items())
                  + ". zennit was not run: it imports torchvision, which fails to import beside this machine's "
                    "CPU build of torch.")
    load_after = os.getloadavg()[0]
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
           f"{args.rounds} round(s) x {args.repeats} interleaved repeats (medians of per-round ratios), "
           f"1-min load average {load_before:.1f} before / {load_after:.1f} after on {os.cpu_count()} cores "
           f"(a load above the core count means the machine was shared with other jobs), {time.strftime('%Y-%m-%d')}")
    print(table)
    print(env)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "bench_lrp.json").write_text(json.dumps({"env": env, "rows": rows,
                                                                 "captum": captum_lines}, indent=2))
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
