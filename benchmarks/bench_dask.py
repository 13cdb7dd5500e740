"""Dataset-scale explanations on Dask: throughput with 1 and 2 workers, peak memory vs data-set size.

The Fashion-MNIST CNN of the image plugin (real weights) is explained with LRP epsilon-plus-box
on the first N real Fashion-MNIST training images, N = 1k, 4k, 16k, written to a ``.npy`` file
that the workers read memory-mapped, chunk by chunk (``sx.explain_dataset``, chunk 256, into
Zarr). Each configuration runs in a fresh Python process, so that its peak memory (VmHWM from
/proc) is its own:

- ``LocalCluster`` with 1 and with 2 worker processes (1 thread each, on loopback): wall time
  of ``explain_dataset`` (cluster start excluded), throughput, peak memory of the client and
  of the largest worker;
- the whole data set in one ``sx.explain`` call in one process, for comparison (up to 4k): its
  peak memory grows with N, the chunked runs' do not.

    python benchmarks/bench_dask.py            # prints the table
    python benchmarks/bench_dask.py --write    # also puts it into benchmarks/README.md
    python benchmarks/bench_dask.py --sizes 1000 4000

The same run on a real cluster: start ``dask scheduler`` and ``dask worker tcp://HOST:8786`` on
the machines, put the store on a file system every worker sees, and pass the address:
``sx.explain_dataset(..., scheduler="tcp://HOST:8786")`` or
``sciexplain run FILE.toml --scheduler tcp://HOST:8786``; nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- bench_dask:start -->", "<!-- bench_dask:end -->"
CHUNK = 256


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _data(n: int, folder: Path) -> Path:
    import numpy as np
    from sciexplain_image import fashion_to_tensor, load_fashion_mnist
    path = folder / f"fashion_{n}.npy"
    if not path.exists():
        X, _ = load_fashion_mnist("train")
        np.save(path, fashion_to_tensor(X[:n]).numpy())
    return path


def _warm_up() -> None:
    import torch

    import dask.array  # noqa: F401
    import zarr  # noqa: F401

    import sciexplain.scale  # noqa: F401
    import sciexplain.explain.engine  # noqa: F401
    torch.set_num_threads(1)


def _one(n: int, workers: int, folder: Path) -> dict:
    """One configuration in this (fresh) process; workers = 0: the whole set in one sx.explain call."""
    import numpy as np
    import torch

    import sciexplain as sx
    from sciexplain_image import load_fashion_cnn

    torch.set_num_threads(1)
    path = _data(n, folder)
    model = load_fashion_cnn()
    if workers == 0:
        x = torch.from_numpy(np.load(path))
        start = time.perf_counter()
        R = sx.explain(model, x, preset="epsilon-plus-box", bounds=(0.0, 1.0))
        seconds = time.perf_counter() - start
        residual = float(abs(R.relevance.residual()).max())
        return {"n": n, "workers": 0, "seconds": seconds, "client_mb": _vmhwm_mb(), "worker_mb": float("nan"),
                "residual": residual}
    from dask.distributed import Client, LocalCluster
    from sciexplain.scale import NpySource
    store = folder / f"relevance_{n}_{workers}.zarr"
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_warm_up)  # imports in the workers are start-up cost, not throughput
        start = time.perf_counter()
        R = sx.explain_dataset(model, NpySource(path), chunk=CHUNK, scheduler=client, store=store, overwrite=True,
                               progress=False, preset="epsilon-plus-box", bounds=(0.0, 1.0))
        seconds = time.perf_counter() - start
        worker_mb = max(client.run(_vmhwm_mb).values())
    residual = float(R.attrs.get("ledger_max_residual", float("nan")))
    return {"n": n, "workers": workers, "seconds": seconds, "client_mb": _vmhwm_mb(), "worker_mb": worker_mb,
            "residual": residual}


def table(rows: list[dict]) -> str:
    load = os.getloadavg()[0]
    lines = [f"Fashion-MNIST CNN (image plugin weights), LRP epsilon-plus-box, chunk {CHUNK}, input read "
             f"memory-mapped from .npy, output to Zarr; {os.cpu_count()} cores, load average {load:.1f} "
             "when the table was written (other jobs shared the machine). Peak memory is VmHWM of each process; "
             "seconds exclude starting the cluster and the workers' imports.",
             "", "| samples | how | seconds | samples/s | peak MB client | peak MB worker (max) | ledger residual |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        how = "one sx.explain call" if r["workers"] == 0 else f"LocalCluster, {r['workers']} worker{'s' * (r['workers'] > 1)}"
        worker = "" if r["worker_mb"] != r["worker_mb"] else f"{r['worker_mb']:.0f}"
        lines.append(f"| {r['n']} | {how} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.0f} | {r['client_mb']:.0f} "
                     f"| {worker} | {r['residual']:.1e} |")
    return "\n".join(lines)


def write_readme(text: str) -> None:
    body = README.read_text() if README.exists() else ""
    block = (f"{START}\n## Dataset-scale explanations on Dask (`bench_dask.py`)\n\n"
             f"`python benchmarks/bench_dask.py --write`\n\n{text}\n\n"
             "On a real cluster only the scheduler changes: `sciexplain run FILE.toml --scheduler tcp://HOST:8786` "
             "(or `scheduler=\"tcp://HOST:8786\"` in `sx.explain_dataset`), with the output store on a file system "
             "every worker can write to.\n{END}")
    block = block.replace("{END}", END)
    if START in body and END in body:
        head, rest = body.split(START, 1)
        tail = rest.split(END, 1)[1]
        body = head + block + tail
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 4000, 16000])
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/README.md")
    parser.add_argument("--one", type=int, nargs=2, metavar=("N", "WORKERS"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one[0], args.one[1], Path(args.folder))))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            # the whole set in one call only up to 4k: at 16k its activations alone need several GB
            for workers in ((0, 1, 2) if n <= 4000 else (1, 2)):
                out = subprocess.run([sys.executable, __file__, "--one", str(n), str(workers), "--folder", folder],
                                     check=True, capture_output=True, text=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(row, flush=True)
    text = table(rows)
    print(text)
    if args.write:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
