"""Start-up cost of the command line: wall and CPU time of `dna --help`, `dna <cmd> --help`,
`dna search` on the full 6-op `mbconv` table (41,448 rows) and the pipeline scripts' `--help` and
`--compile`, each a fresh process, with this checkout's code and, for comparison, another
checkout's (``--before /path/to/old/checkout``). CPU time (user + sys of the child) barely
depends on the machine's load; wall time does. Figures go to benchmarks/RESULTS.md
(## Command-line start-up).

Usage: python benchmarks/cli_startup.py [--repeats 5] [--before PATH] [--no-record]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import machine, record  # noqa: E402


def _commands(scores: str, out: str) -> list[tuple[str, list[str]]]:
    py = [sys.executable]
    return [
        ("dna --help", [*py, "-m", "dna", "--help"]),
        ("dna search --help", [*py, "-m", "dna", "search", "--help"]),
        ("dna retrain --help", [*py, "-m", "dna", "retrain", "--help"]),
        ("dna --version", [*py, "-m", "dna", "--version"]),
        ("dna search TABLE --max-params 5.3M", [*py, "-m", "dna", "search", scores, "--max-params", "5.3M"]),
        ("dna search TABLE --max-params 5.3M --max-flops 400M --json",
         [*py, "-m", "dna", "search", scores, "--max-params", "5.3M", "--max-flops", "400M", "--json"]),
        ("pipelines/dna.py --help", [*py, "pipelines/dna.py", "--help"]),
        ("pipelines/dna.py --compile FILE", [*py, "pipelines/dna.py", "--compile", out]),
    ]


def _time(cmd: list[str], code_root: Path) -> tuple[float, float, int]:
    """(wall s, CPU s of the child, exit code) of one run with ``code_root``'s packages."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 and "--version" not in cmd:
        print(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}", file=sys.stderr)
    return wall, cpu, proc.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs of each command (median kept)")
    ap.add_argument("--before", default=None, help="another checkout to time the same commands with")
    ap.add_argument("--no-record", action="store_true", help="print only, do not write RESULTS.md")
    args = ap.parse_args(argv)

    from benchmarks.search import scores_table
    from dna.rate.scores import write_scores
    from dna.space import get_space

    tmp = tempfile.mkdtemp(prefix="dna-cli-")
    table, _ = scores_table(get_space("mbconv"))
    scores = write_scores(table, os.path.join(tmp, "mbconv.parquet"))
    roots = [("this checkout", ROOT)] + ([("before", Path(args.before).resolve())] if args.before else [])
    rows = []
    load0 = os.getloadavg()[0]
    for name, cmd in _commands(scores, os.path.join(tmp, "dna.yaml")):
        cells = []
        for _, root in roots:
            runs = [_time(cmd, root) for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            ok = all(r[2] == 0 for r in runs)
            cells.append(f"{wall:.2f} s / {cpu:.2f} s" if ok else "fails (no such flag)")
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    load1 = os.getloadavg()[0]
    head = "| command | " + " | ".join(f"{n}: wall / CPU" for n, _ in roots) + " |"
    body = "\n".join([
        f"Machine: {machine()}; load average {load0:.1f} at the start, {load1:.1f} at the end (the 2 cores "
        "were shared with other engineers' jobs: wall times are inflated, CPU times much less so).",
        "",
        f"Command: `python benchmarks/cli_startup.py --repeats {args.repeats}"
        + (" --before <checkout of the previous commit>`" if args.before else "`")
        + f". Each command a fresh process; median of {args.repeats} runs; CPU = user + sys of the process. "
        "The table: every path x input width of the 6-op `mbconv` space (41,448 rows) in one Parquet file.",
        "",
        head,
        "|---" * (len(roots) + 1) + "|",
        *rows,
    ])
    print(body)
    if not args.no_record:
        record("Command-line start-up", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
