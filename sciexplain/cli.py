"""Command line of sciexplain.

``sciexplain run FILE.toml [--scheduler ADDRESS|threads|processes|serial] [--out DIR] [--small] [--overwrite]``
    run a pipeline file (see examples/README.md); one run at a time per output folder
``sciexplain check FILE.toml [--probe]``
    validate a pipeline file without writing anything (--probe: also load the data and the
    model and explain the first sample with every method, as the run's first step does)
``sciexplain demo --out results`` / ``sciexplain domains``
    the end-to-end demos on bundled real data / the installed domain plugins

Exit codes: 0 success; 1 the pipeline file has problems (each printed with its line);
2 bad command-line usage; 3 the run failed (the message names the step and the sample;
outputs written so far stay readable and rerunning resumes); 4 the output folder cannot be
written (read-only, a path under a file, or a folder sciexplain did not write holding files the
run would replace; nothing was changed); 5 the output folder is being written by another run
(the message names it: pid, host, start time; a lock left by a killed run on this host is
taken over, one from another host must be deleted by hand once that run is known to be over).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sciexplain", description=__doc__.replace("``", ""),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the end-to-end explanations on bundled real data")
    d.add_argument("--out", default="results", help="output folder (default: results)")
    d.add_argument("--only", nargs="*", default=None, help="run only these parts (core and/or domain names)")
    sub.add_parser("domains", help="list installed domain plugins")
    codes = __doc__[__doc__.index("Exit codes:"):]
    r = sub.add_parser("run", help="run a pipeline file (TOML)", epilog=codes,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("file", help="the pipeline file")
    r.add_argument("--scheduler", default=None,
                   help="serial, threads, processes, or a Dask scheduler address such as tcp://host:8786 "
                        "(default: the file's run.scheduler)")
    r.add_argument("--out", default=None, help="output folder (default: the file's run.out)")
    r.add_argument("--small", action="store_true", default=None, help="apply the file's [run.small_settings]")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--overwrite", action="store_true",
                   help="replace relevance stores in the output folder that hold another computation (only stores "
                        "sciexplain wrote; other folders are never removed)")
    c = sub.add_parser("check", help="validate a pipeline file without running it", epilog=codes,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("file", help="the pipeline file")
    c.add_argument("--probe", action="store_true",
                   help="also load the data and the model and explain the first sample with every method")
    c.add_argument("--small", action="store_true", default=None, help="probe with the file's [run.small_settings]")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    if args.command in ("run", "check"):
        return _pipeline(args)
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


#: exit codes (documented in the module docstring, which is also ``--help``)
EXIT_OK, EXIT_CONFIG, EXIT_USAGE, EXIT_RUN, EXIT_OUTPUT, EXIT_LOCKED = 0, 1, 2, 3, 4, 5


def _pipeline(args: argparse.Namespace) -> int:
    from .errors import SciexplainError
    from .pipeline import ConfigError, LockError, OutputError, PipelineError, check, run
    try:
        if args.command == "check":
            config = check(args.file, probe=args.probe, small=args.small)
            print(f"{args.file}: OK ({len(config.get('methods', []))} methods, "
                  f"{len(config.get('pooling', []))} pooling steps, {len(config.get('figures', []))} figures)")
            return 0
        result = run(args.file, scheduler=args.scheduler, out=args.out, small=args.small,
                     progress=False if args.no_progress else None, overwrite=args.overwrite)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return EXIT_CONFIG
    except LockError as err:
        print(f"sciexplain {args.command} {args.file}: {err}", file=sys.stderr)
        return EXIT_LOCKED
    except OutputError as err:
        print(f"sciexplain {args.command} {args.file}: {err}", file=sys.stderr)
        return EXIT_OUTPUT
    except (PipelineError, SciexplainError) as err:
        print(f"sciexplain {args.command} {args.file}: {err}", file=sys.stderr)
        return EXIT_RUN
    for row in result.evaluation:
        print(f"{row['method']:>24} {row['order']:>12}  {row['metric']} {row['value']:.4f}")
    for row in result.checks:
        layer = f" {row['layer']}" if row.get("layer") else ""
        print(f"{row['method']:>24} {row['check']}{layer}: mean {row['mean']:.4f}, median {row['median']:.4f} "
              f"({row['n_samples']} samples)")
    print(f"{len(result.files)} outputs written to {result.out} (provenance.json: config sha256 "
          f"{result.provenance['config_sha256'][:12]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
