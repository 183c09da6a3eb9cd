"""Members trained per hour on one GPU: one vectorised population process (kdgan.vectorised)
at P = 1, 8, 32, 128, against 8 single-member processes running at once on the same GPU.

    python -m benchmarks.population_gpu --out results/population-gpu          # H200: < 8 min
    python -m benchmarks.population_gpu --device cpu --quick --out /tmp/pop   # a check: < 1 min

The workload: MNIST, method kdgan, n = 100, the default config, `--epochs` game epochs per
member (default 10), each epoch followed by the evaluation a Run does (validation and test
accuracy of C). Pretraining is NOT timed: every seed is pretrained once first, into a
pretraining cache (`--cache`, a temporary folder by default; `--pretrain-procs` processes at
once), and every timed configuration reads its players from it. A member is one seed; a
member "trained" is one that has played its `--epochs` game epochs, so members per hour =
members x 3600 / the game's wall time, and `members/h @30` scales that to a full default
run of 30 game epochs (still without pretraining).

The single-member processes are started first and each loads its data and players; the
clock starts when all of them are ready and stops when the last one ends. Needs torch,
numpy and pandas only (no Ray). Writes OUT/population_gpu.csv and OUT/population_gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from kdgan.config import Config
from kdgan.losses import tau_at
from kdgan.run import Run
from kdgan.vectorised import RngStreams, VectorisedGame, unsupported

FULL_RUN_EPOCHS = 30  # Config().epochs: the game epochs of a default run
ROOT = Path(__file__).resolve().parents[1]


def _child_env() -> dict[str, str]:
    """The workers import this checkout's kdgan and benchmarks, whatever is installed."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def config(args: argparse.Namespace, seed: int) -> Config:
    values = dict(dataset="mnist", n=100, method="kdgan", seed=seed, device=args.device,
                  epochs=args.epochs, pretrain_cache=str(args.cache))
    if args.quick:  # a check that the script runs, not a measurement
        values.update(pretrain_epochs=1, dis_pretrain_epochs=1, cls_steps=1, tch_steps=1,
                      dis_steps=1)
    return Config.from_dict(values)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------ pretraining (untimed)
def pretrain(args: argparse.Namespace, seeds: list[int]) -> float:
    """Every seed's players into the cache, `--pretrain-procs` worker processes at once."""
    t0 = time.perf_counter()
    chunks = [seeds[i::args.pretrain_procs] for i in range(args.pretrain_procs)]
    cmds = [_worker_cmd(args, "pretrain", chunk) for chunk in chunks if chunk]
    with ThreadPoolExecutor(len(cmds)) as pool:
        for proc in pool.map(lambda c: subprocess.run(c, capture_output=True, text=True, cwd=ROOT, env=_child_env()), cmds):
            if proc.returncode:
                raise RuntimeError(f"pretraining worker failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _worker_cmd(args: argparse.Namespace, role: str, seeds: list[int]) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.population_gpu", "--worker", role,
           "--seeds", ",".join(map(str, seeds)), "--device", args.device,
           "--epochs", str(args.epochs), "--cache", str(args.cache)]
    return cmd + (["--quick"] if args.quick else [])


# ------------------------------------------------------------------ the timed configurations
def vectorised(args: argparse.Namespace, p: int) -> dict:
    """One process, P members, the vectorised game; wall time of the game epochs with the
    per-epoch evaluation of every member (validation and test)."""
    runs, states = [], []
    for seed in range(p):
        run = Run(config(args, seed))
        run.pretrain()  # reads the cache; sets the member's game stream
        runs.append(run)
        states.append(RngStreams.capture(run.device))
    streams = RngStreams(states, runs[0].device)
    game = VectorisedGame([r.game for r in runs], streams.member)
    cfg = runs[0].cfg
    _sync(args.device)
    t0 = time.perf_counter()
    for e in range(1, args.epochs + 1):
        tau = tau_at((e - 1) / max(1, cfg.epochs - 1), cfg.tau_start, cfg.tau_end)
        game.play_epoch(tau)
        game.evaluate("cls", "val")
        game.evaluate("cls", "test")
    _sync(args.device)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else float("nan")
    del game, runs
    return _row(f"vectorised P={p}", p, 1, args.epochs, wall, peak)


def processes(args: argparse.Namespace, count: int) -> dict:
    """`count` single-member processes (seeds 0..count-1) at once, each a plain Run."""
    procs = [subprocess.Popen(_worker_cmd(args, "single", [seed]), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env()) for seed in range(count)]
    for proc in procs:  # each has loaded its data and players
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"single-member worker did not start: {line!r}")
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"single-member worker failed (exit {proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return _row(f"{count} processes", 1, count, args.epochs, wall, float("nan"))


def _row(name: str, p: int, procs: int, epochs: int, wall: float, peak_gib: float) -> dict:
    members = p * procs
    return {"setup": name, "members/process": p, "processes": procs, "members": members,
            "game epochs": epochs, "wall s": round(wall, 3),
            "s per epoch": round(wall / epochs, 4),
            "member-epochs/s": round(members * epochs / wall, 2),
            "members/h": round(members * 3600 / wall, 1),
            f"members/h @{FULL_RUN_EPOCHS}": round(members * 3600 * epochs / (wall * FULL_RUN_EPOCHS), 1),
            "peak GiB": round(peak_gib, 2)}


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs tabulate, which kdgan does not)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


# ------------------------------------------------------------------ workers
def worker(args: argparse.Namespace) -> int:
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if args.worker == "pretrain":
        for seed in seeds:
            Run(config(args, seed)).pretrain()
        return 0
    run = Run(config(args, seeds[0]))
    run.pretrain()  # from the cache, untimed
    print("ready", flush=True)
    sys.stdin.readline()
    _sync(args.device)
    start = time.time()
    for _ in range(args.epochs):
        run.play_epoch()  # the game epoch and the evaluation on validation and test
    _sync(args.device)
    print(json.dumps({"start": start, "end": time.time()}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/population-gpu"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32, 128],
                    help="members per vectorised process")
    ap.add_argument("--procs", type=int, default=8, help="single-member processes at once")
    ap.add_argument("--epochs", type=int, default=10, help="timed game epochs per member")
    ap.add_argument("--pretrain-procs", type=int, default=8)
    ap.add_argument("--cache", type=Path, default=None,
                    help="pretraining cache (default: a temporary folder, removed at the end)")
    ap.add_argument("--quick", action="store_true",
                    help="a check that it runs: P = 1, 2; 2 processes; 1 epoch of one step per player; "
                         "1 pretraining pass")
    ap.add_argument("--worker", choices=("pretrain", "single"), help=argparse.SUPPRESS)
    ap.add_argument("--seeds", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.sizes, args.procs, args.epochs, args.pretrain_procs = [1, 2], 2, 1, 1
    temporary = args.cache is None
    if temporary:
        args.cache = Path(tempfile.mkdtemp(prefix="kdgan-popbench-"))
    reason = unsupported(config(args, 0))
    if reason:
        print(f"kdgan on MNIST cannot run vectorised: {reason}", file=sys.stderr)
        return 2
    try:
        seeds = list(range(max(max(args.sizes), args.procs)))
        pre_s = pretrain(args, seeds)
        print(f"pretrained {len(seeds)} seeds in {pre_s:.1f} s (untimed; read from {args.cache})",
              flush=True)
        rows = []
        for p in args.sizes:
            rows.append(vectorised(args, p))
            print(rows[-1], flush=True)
        rows.append(processes(args, args.procs))
        print(rows[-1], flush=True)
    finally:
        if temporary:
            shutil.rmtree(args.cache, ignore_errors=True)
    table = pd.DataFrame(rows)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    text = (f"# Population throughput: MNIST kdgan n=100, {args.epochs} game epochs per member\n\n"
            f"Device: {device}; torch {torch.__version__}; pretraining ({len(seeds)} seeds, "
            f"{pre_s:.0f} s) outside the timing, read from the pretraining cache. Each epoch "
            "includes the validation and test evaluation of every member.\n\n"
            + markdown(table) + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "population_gpu.csv", index=False)
    (args.out / "population_gpu.md").write_text(text)
    print("\n" + text)
    print(f"written: {args.out / 'population_gpu.csv'}, {args.out / 'population_gpu.md'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
