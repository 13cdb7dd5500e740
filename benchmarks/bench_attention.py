"""Cost of explaining attention models with LRP relative to a gradient pass, beside LXT (AttnLRP).

Models (built from configs with fixed seeds, no hub; eager attention, i.e. matmul + softmax):

* ``BERT h256 L4``   transformers BertForSequenceClassification, hidden 256, 4 layers, 4 heads,
  sequence 128, batch 8 (token ids from the 30522-word vocabulary, no padding)
* ``BERT h768 L12``  the same with BERT-base's shape: hidden 768, 12 layers, 12 heads
* ``EEGConformer``   braindecode 0.8.1, 22 channels x 1000 samples (BCI IV 2a's shape), batch 8

Methods, timed interleaved in one process per model (so load on the machine affects them alike),
one thread (``torch.set_num_threads(1)``):

* ``gradient``  one forward and one backward of the same model on the same input: the gradient of
  the explained logits with respect to the explained input (BERT: the word-embedding output,
  where sciexplain explains token ids; EEGConformer: the signal), ``torch.autograd.grad``
* ``sciexplain attnlrp`` / ``sciexplain cp-lrp``: ``sx.explain`` with that preset
* ``LXT attnlrp`` (BERT only): LXT 2.1's efficient AttnLRP (``lxt.efficient.monkey_patch`` of
  transformers' BERT module, then gradient x input at the embedding output), in a separate process
  because LXT patches ``torch.nn.LayerNorm`` and ``nn.Dropout`` globally; there ``gradient`` is
  timed again before patching, so each process has its own baseline. LXT imports torchvision at
  import time, which does not load beside this machine's CPU torch: this script puts a stub module
  for the one name LXT uses (``torchvision.models.vision_transformer``, whose ``nn`` is torch.nn)
  into ``sys.modules`` first, and says so in its output. LXT is not a sciexplain dependency
  (``pip install --no-deps lxt==2.1`` for this benchmark).

Quality columns: ``sum R / f(x)`` (median over the batch) and the ledger residual: for sciexplain
max |sum R + absorbed - f(x)| / |f(x)| over the batch (what no ledger row accounts for); for LXT,
which keeps no ledger, max |f(x) - sum R| / |f(x)| (all that it leaves unaccounted).
Peak memory: the kernel's high-water mark of resident memory above the size just before one call
(VmHWM after writing 5 to /proc/self/clear_refs), measured in a second worker process run with
MALLOC_MMAP_THRESHOLD_ fixed so that freed tensors go back to the system between calls (the times
come from a process with the default allocator: that setting turns every large allocation into a
fresh mapping and slows down whichever method allocates more). Besides wall-clock time, the
process CPU time of every call is recorded (steadier on a machine shared with other jobs).

The time of each method is the median of ``repeats`` interleaved calls after a warm-up plus the
call that measures memory and quality; for BERT h768 L12 (BIG) one call plus that call, without
warm-up, and without cp-lrp, so that the whole run stays under about 10 minutes on 2 cores.

Usage: python benchmarks/bench_attention.py [--cases all|small] [--repeats 3] [--write]
(--write updates benchmarks/README.md; results go to benchmarks/results/attention.json)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
BATCH, SEQ = 8, 128
CASES = {"BERT h256 L4": dict(hidden=256, layers=4), "BERT h768 L12": dict(hidden=768, layers=12),
         "EEGConformer": dict()}
#: cases timed with one call per method after the first (no warm-up; cp-lrp left out) to keep the run short
BIG = {"BERT h768 L12"}
STUB_NOTE = ("LXT imports torchvision at import time, which fails beside this machine's CPU torch: a stub "
             "module torchvision.models.vision_transformer (nn = torch.nn) was put into sys.modules first")


# -- models --------------------------------------------------------------------------------------

def bert(hidden: int, layers: int, module=None):
    """BertForSequenceClassification with BERT's proportions (head size 64, MLP 4 x hidden)."""
    import transformers
    cls = (module or transformers).BertForSequenceClassification
    cfg = transformers.BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                  intermediate_size=4 * hidden, num_labels=2, attn_implementation="eager")
    torch.manual_seed(0)
    return cls(cfg).eval()


def bert_input():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 30000, (BATCH, SEQ), generator=g)
    return ids, torch.ones_like(ids)


def conformer():
    import warnings
    from braindecode.models import EEGConformer
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EEGConformer(n_outputs=4, n_chans=22, n_times=1000, final_fc_length="auto").eval()
    return model, torch.randn(BATCH, 22, 1000, generator=torch.Generator().manual_seed(1))


# -- methods ------------------------------------------------------------------------------------

def _bert_gradient(model, ids, mask):
    def run():
        emb = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_()
        logits = model(inputs_embeds=emb, attention_mask=mask).logits
        sel = logits[torch.arange(len(ids)), logits.argmax(1)]
        (g,) = torch.autograd.grad(sel.sum(), emb)
        return emb, g, sel.detach()
    return run


def _quality_sx(R) -> tuple[float, float]:
    rel = R[R.attrs["inputs"]] if hasattr(R, "data_vars") else R
    total = rel.values.reshape(rel.shape[0], -1).sum(1).astype("float64")
    pred = R["prediction"].values.astype("float64")
    absorbed = R["absorbed"].values.astype("float64")
    return (float(statistics.median(total / pred)), float((abs(total + absorbed - pred) / abs(pred)).max()))


def sx_methods(case: str):
    import sciexplain as sx
    if case.startswith("BERT"):
        model = bert(**CASES[case])
        ids, mask = bert_input()
        data = {"input_ids": ids, "attention_mask": mask}
        grad = _bert_gradient(model, ids, mask)

        def lrp(preset):
            return lambda: sx.explain(model, data, inputs=["input_ids"], preset=preset)
    else:
        model, x = conformer()

        def grad():
            xr = x.detach().requires_grad_()
            out = model(xr)
            (g,) = torch.autograd.grad(out[torch.arange(len(x)), out.argmax(1)].sum(), xr)
            return g

        def lrp(preset):
            return lambda: sx.explain(model, x, preset=preset)
    return {"gradient": grad, "sciexplain attnlrp": lrp("attnlrp"), "sciexplain cp-lrp": lrp("cp-lrp")}


def lxt_methods(case: str):
    """LXT's AttnLRP on the same BERT (same weights); the plain gradient is timed before patching."""
    import transformers  # noqa: F401  (before the stub: transformers probes torchvision's spec)
    from transformers.models.bert import modeling_bert
    original = bert(**CASES[case])
    ids, mask = bert_input()
    tv, tvm, vt = (types.ModuleType(n) for n in ("torchvision", "torchvision.models",
                                                  "torchvision.models.vision_transformer"))
    vt.nn, tvm.vision_transformer, tv.models = torch.nn, vt, tvm
    sys.modules.update({"torchvision": tv, "torchvision.models": tvm, "torchvision.models.vision_transformer": vt})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lxt.efficient import monkey_patch
    return original, ids, mask, monkey_patch, modeling_bert


# -- measuring ------------------------------------------------------------------------------------

def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def time_interleaved(fns: dict, repeats: int, warm_up: bool = True) -> tuple[dict, dict]:
    """Wall-clock and process CPU times of ``repeats`` interleaved calls of each function."""
    if warm_up:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return times, cpu


def measured(fn) -> tuple[float, float, object]:
    """One more call: its time, its peak extra memory (MB) and its result."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, (_status_kb("VmHWM") - base) / 1024, out, cpu


def worker(kind: str, case: str, repeats: int) -> dict:
    """Times (``repeats`` interleaved calls, plus the call that measures memory and quality)."""
    torch.set_num_threads(1)
    big = case in BIG
    rows = {}
    if kind == "sx":
        fns = sx_methods(case)
        if big:
            fns.pop("sciexplain cp-lrp")
        times, cpu = time_interleaved(fns, repeats, warm_up=not big)
        for k, fn in fns.items():
            seconds, peak, out, c = measured(fn)
            rows[k] = {"times": times[k] + [seconds], "cpu_times": cpu[k] + [c], "peak_mb": peak}
            if k != "gradient":
                rows[k]["sum_ratio"], rows[k]["residual"] = _quality_sx(out)
            del out
        return {"rows": rows}
    original, ids, mask, monkey_patch, modeling_bert = lxt_methods(case)
    grad = _bert_gradient(original, ids, mask)
    times, cpu = time_interleaved({"g": grad}, repeats, warm_up=not big)
    seconds, peak, _, c = measured(grad)
    rows["gradient"] = {"times": times["g"] + [seconds], "cpu_times": cpu["g"] + [c], "peak_mb": peak}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monkey_patch(modeling_bert)
    model = bert(**CASES[case], module=modeling_bert)
    model.load_state_dict(original.state_dict())
    run = _bert_gradient(model, ids, mask)  # LXT: gradient x input of the patched model

    def lxt():
        emb, g, sel = run()
        return (emb * g).sum(-1), sel
    times, cpu = time_interleaved({"l": lxt}, repeats, warm_up=not big)
    seconds, peak, (rel, sel), c = measured(lxt)
    with torch.no_grad():
        ref = original(input_ids=ids, attention_mask=mask).logits
        ref = ref[torch.arange(len(ids)), ref.argmax(1)]
    assert torch.allclose(sel, ref, rtol=1e-4, atol=1e-5), "LXT's patched model computes other logits"
    total = rel.detach().double().sum(1)
    rows["LXT attnlrp"] = {"times": times["l"] + [seconds], "cpu_times": cpu["l"] + [c], "peak_mb": peak,
                           "sum_ratio": float((total / sel.double()).median()),
                           "residual": float(((sel.double() - total).abs() / sel.double().abs()).max())}
    return {"rows": rows, "note": STUB_NOTE}


def _run(kind: str, case: str, repeats: int, env: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--case", case, "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(kind: str, case: str, repeats: int) -> dict:
    """Times from one process with the allocator as users have it; peak memory from a second
    process whose allocator returns freed tensors to the system (MALLOC_MMAP_THRESHOLD_), so that
    the high-water mark is the call's own: that setting makes every large allocation a fresh
    mapping and would slow down the method that allocates more, so it is kept out of the timing."""
    base = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    timed = _run(kind, case, 1 if case in BIG else repeats, base)
    if "error" in timed:
        return timed
    memory = _run(kind, case, 0, dict(base, MALLOC_MMAP_THRESHOLD_="65536"))
    for k, row in timed["rows"].items():
        row["peak_mb"] = memory.get("rows", {}).get(k, {}).get("peak_mb", float("nan"))
    return timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="all", help="all, small (BERT h256 L4 and EEGConformer) or one case name")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--worker", choices=["sx", "lxt"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.case, args.repeats)))
        return
    cases = (list(CASES) if args.cases == "all" else ["BERT h256 L4", "EEGConformer"] if args.cases == "small"
             else [args.cases])
    started, load_before = time.time(), os.getloadavg()[0]
    results, notes = {}, []
    for case in cases:
        res = {"sciexplain": run_worker("sx", case, args.repeats)}
        if case.startswith("BERT"):
            res["lxt"] = run_worker("lxt", case, args.repeats)
            if "note" in res["lxt"] and res["lxt"]["note"] not in notes:
                notes.append(res["lxt"]["note"])
        results[case] = res
        print(f"{case}: done after {time.time() - started:.0f} s", file=sys.stderr)
    load_after = os.getloadavg()[0]
    lines = ["| model | method | median time (s) | x gradient | x gradient (CPU time) | sum R / f(x) | ledger residual "
             "| peak extra memory (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    rows = []
    for case, res in results.items():
        for proc, out in res.items():
            if "error" in out:
                lines.append(f"| {case} | {proc} | failed: {out['error']} | | | | | |")
                continue
            base = statistics.median(out["rows"]["gradient"]["times"])
            base_cpu = statistics.median(out["rows"]["gradient"]["cpu_times"])
            for k, r in out["rows"].items():
                med = statistics.median(r["times"])
                cpu_ratio = statistics.median(r["cpu_times"]) / base_cpu
                label = k if proc == "sciexplain" else f"{k} (LXT's process)" if k == "gradient" else k
                row = {"model": case, "method": label, "median_s": med, "ratio": med / base,
                       "sum_ratio": r.get("sum_ratio"), "residual": r.get("residual"), "peak_mb": r["peak_mb"],
                       "times": r["times"], "cpu_ratio": cpu_ratio, "cpu_times": r["cpu_times"]}
                rows.append(row)
                q = ("| - | - |" if row["sum_ratio"] is None else f"| {row['sum_ratio']:.3f} | {row['residual']:.1e} |")
                lines.append(f"| {case} | {label} | {med:.3f} | {med / base:.2f} | {cpu_ratio:.2f} {q} "
                             f"{r['peak_mb']:.0f} |")
    vs_lxt = []
    for case, res in results.items():
        try:
            ours = statistics.median(res["sciexplain"]["rows"]["sciexplain attnlrp"]["times"])
            theirs = statistics.median(res["lxt"]["rows"]["LXT attnlrp"]["times"])
            vs_lxt.append(f"{case}: sciexplain attnlrp / LXT attnlrp = {ours / theirs:.2f} (time; < 1: sciexplain faster)")
            sx_rows, lxt_rows = res["sciexplain"]["rows"], res["lxt"]["rows"]
            ours_cpu = (statistics.median(sx_rows["sciexplain attnlrp"]["cpu_times"])
                        / statistics.median(sx_rows["gradient"]["cpu_times"]))
            theirs_cpu = (statistics.median(lxt_rows["LXT attnlrp"]["cpu_times"])
                          / statistics.median(lxt_rows["gradient"]["cpu_times"]))
            vs_lxt.append(f"{case}: in CPU time, each against its own process's gradient pass: sciexplain "
                          f"{ours_cpu:.2f}x, LXT {theirs_cpu:.2f}x")
        except KeyError:
            pass
    table = "\n".join(lines)
    if vs_lxt:
        table += "\n\n" + "\n".join(f"- {v}" for v in vs_lxt)
    env = (f"torch {torch.__version__}, 1 thread per process, {platform.processor() or platform.machine()}, "
           f"{args.repeats} interleaved repeats after one warm-up plus the memory call (medians; "
           f"{', '.join(sorted(BIG))}: one call and the memory call, no warm-up, no cp-lrp), eager attention, batch {BATCH}, "
           f"sequence {SEQ}; 1-min load average {load_before:.1f} before / {load_after:.1f} after on "
           f"{os.cpu_count()} cores (above the core count: the machine was shared with other jobs); "
           f"{time.time() - started:.0f} s in all; {time.strftime('%Y-%m-%d')}")
    print(table)
    print(env)
    for n in notes:
        print(f"Note: {n}")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "attention.json").write_text(json.dumps(
        {"env": env, "notes": notes, "rows": rows, "vs_lxt": vs_lxt, "cases": cases}, indent=2))
    if args.write:
        readme = HERE / "README.md"
        text = readme.read_text()
        start, end = "<!-- bench_attention:start -->", "<!-- bench_attention:end -->"
        block = f"{start}\n{table}\n\n{env}\n" + "".join(f"\nNote: {n}\n" for n in notes) + end
        if start in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text += "\n" + block + "\n"
        readme.write_text(text)


if __name__ == "__main__":
    main()
