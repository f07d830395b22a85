"""Run every benchmark in ``benchmarks/`` and print one table: measurement, result, target, met.

    python benchmarks/run_all.py                 # every bench_*.py script, full rounds
    python benchmarks/run_all.py --quick         # fewer rounds, same measurements
    python benchmarks/run_all.py --no-browser    # skip what needs JupyterLab + Chromium
    python benchmarks/run_all.py --only importance,optimize
    python benchmarks/run_all.py --markdown      # the table in the README's "Benchmarks" section

The convention every ``benchmarks/bench_*.py`` script follows (helpers in ``benchmarks/_rows.py``):

- it runs as a script (``python benchmarks/bench_x.py``), prints whatever a reader wants to see,
  and for each result prints one line ``BENCH-ROW {json}`` with the keys ``measurement`` (what is
  compared with what), ``value`` (the result, e.g. "7.4x faster"), ``target`` (e.g. ">= 7x"; empty
  when there is none) and ``met`` (true, false, or null when there is no target or nothing was
  measured): ``_rows.row(measurement, value, target, met)`` writes it;
- it accepts ``--quick`` (fewer rounds) and ``--no-browser`` (skip Chromium parts):
  ``_rows.add_options(parser)`` adds both;
- timings compare both sides side by side: rounds interleave the two, and a ratio is the median of
  the per-round ratios (``_rows.median_ratio``), so load on a shared machine moves both alike;
- GPU results are rows of their own; where no CUDA GPU is available, the row says so
  (``_rows.no_cuda()`` gives the sentence) with ``met`` null.

Each script runs in its own process (its own imports, threads and memory); a script that fails
or prints no rows shows up as a row that says so, and run_all exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _rows import parse  # noqa: E402


def scripts(only: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if only:
        found = [p for p in found if any(name in p.stem for name in only)]
    return found


def run(script: Path, flags: list[str], timeout: float, echo: bool) -> tuple[list[dict], str]:
    """The rows a script printed, and a note on how it ended ('' when it ended well)."""
    env = dict(os.environ)
    root = str(HERE.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    rows: list[dict] = []
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(script), *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=root
        )
    except OSError as err:
        return rows, f"could not start: {err}"
    lines = []
    timer = threading.Timer(timeout, proc.kill)  # a script that hangs without printing is stopped too
    timer.start()
    try:
        for line in proc.stdout:  # read as it comes, so --verbose shows progress
            record = parse(line)
            if record is not None:
                rows.append(record)
            else:
                lines.append(line)
                if echo:
                    print("    " + line, end="", flush=True)
        code = proc.wait()
    except KeyboardInterrupt:
        proc.kill()
        raise
    finally:
        timer.cancel()
    if time.perf_counter() - start >= timeout:
        return rows, f"stopped after {timeout:.0f} s (--timeout)"
    if code != 0:
        last = [line.strip() for line in lines if line.strip()][-1:] or ["no output"]
        return rows, f"exited with status {code}: {last[0][-300:]}"
    if not rows:
        return rows, "printed no BENCH-ROW lines"
    return rows, ""


def verdict(met) -> str:
    return {True: "met", False: "NOT met", None: "-"}[met]


def table(results: list[tuple[str, dict]], markdown: bool) -> str:
    header = ("script", "measurement", "result", "target", "met")
    body = [(name, r["measurement"], r["value"], r["target"] or "-", verdict(r["met"])) for name, r in results]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        last = None
        for name, *rest in body:
            cells = [f"`{name}`" if name != last else "", *(str(c).replace("|", "\\|") for c in rest)]
            out.append("| " + " | ".join(cells) + " |")
            last = name
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    widths[1] = min(widths[1], 70)
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds in every script")
    parser.add_argument("--no-browser", action="store_true", help="skip the parts that need JupyterLab + Chromium")
    parser.add_argument("--only", default="", help="comma-separated parts of script names, e.g. importance,optimize")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (the README's table)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per script")
    parser.add_argument("--verbose", action="store_true", help="show each script's own output as it runs")
    args = parser.parse_args()
    flags = [f for f, on in (("--quick", args.quick), ("--no-browser", args.no_browser)) if on]
    found = scripts([s for s in args.only.split(",") if s])
    if not found:
        print(f"no benchmark script matches --only {args.only!r}", file=sys.stderr)
        return 2
    results: list[tuple[str, dict]] = []
    failed = False
    for script in found:
        print(f"running {script.name} {' '.join(flags)}".rstrip(), file=sys.stderr, flush=True)
        start = time.perf_counter()
        rows, problem = run(script, flags, args.timeout, args.verbose)
        print(f"  {script.name}: {len(rows)} row(s) in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        results += [(script.name, r) for r in rows]
        if problem:
            failed = True
            results.append((script.name, {"measurement": "(the script)", "value": problem, "target": "", "met": False}))
    print(table(results, args.markdown))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
