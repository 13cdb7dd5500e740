"""Command line: ``python -m sciexplain demo --out results`` and ``python -m sciexplain domains``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sciexplain", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the end-to-end explanations on bundled real data")
    d.add_argument("--out", default="results", help="output folder (default: results)")
    d.add_argument("--only", nargs="*", default=None, help="run only these parts (core and/or domain names)")
    sub.add_parser("domains", help="list installed domain plugins")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    if args.command == "domains":
        from .plugins import domains
        for name, version in domains().items():
            print(f"{name}\t{version}")
        return 0
    out = Path(args.out)
    report = {}
    if args.only is None or "core" in args.only:
        from .demo import run_digits_demo
        print("[core] digits CNN: training, explaining ...", flush=True)
        report["core"] = run_digits_demo(out / "core")
        print(json.dumps(report["core"], indent=2), flush=True)
    from .plugins import load_domains
    for name, domain in load_domains().items():
        if args.only is not None and name not in args.only:
            continue
        demo = getattr(domain, "demo", None)
        if demo is None:
            continue
        print(f"[{name}] running demo ...", flush=True)
        report[name] = demo(out / name)
        print(json.dumps(report[name], indent=2, default=str), flush=True)
    (out).mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"results written to {out.resolve()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
