"""Every error a user can cause, tried as a user would: exit code, seconds to the error, and
what is printed. Each case runs the real command in a fresh process.

    python -m benchmarks.bad_inputs --out results/bad-inputs

Writes report.md (the table) and report.json. A case passes when the command exits non-zero
within a minute with one line (no traceback) that starts with "error:".
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.faults import write_space
from kdgan.io import atomic_write

PY = sys.executable


def _cases(work: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    space = write_space(work, epochs=1)
    storage = work / "results"
    tune = [PY, "-m", "kdgan.tune", "--space", str(space), "--storage-path", str(storage)]
    train = [PY, "-m", "kdgan.train", "--dataset", str(work / "blobs.npz"), "--quiet",
             "--set", "n=60", "--set", "cls_arch=mlp-small", "--set", "tch_arch=linear",
             "--set", "dis_arch=mlp-small", "--set", "augment=false", "--set", "epochs=1",
             "--set", "pretrain_epochs=1", "--set", "dis_pretrain_epochs=1"]
    (work / "a-file").write_text("")
    bad = work / "rows.npz"
    x = np.zeros((10, 4, 4), np.float32)
    np.savez(bad, x_train=x, y_train=np.zeros(9, np.int64), x_test=x, y_test=np.zeros(10, np.int64))
    damaged = storage / "damaged"
    (damaged / "parts" / "trials").mkdir(parents=True)
    (damaged / "parts" / "trials" / "0001.parquet").write_bytes(b"PAR1 garbage")
    study = storage / "study"
    study.mkdir(parents=True)
    (study / "optuna.db").write_bytes(b"not a database " * 100)
    ckpt = work / "run-damaged"
    subprocess.run([*train, "--out", str(ckpt)], check=True, capture_output=True)
    (ckpt / "checkpoint.pt").write_bytes(b"\x80\x02 garbage")
    other = work / "run-other"
    subprocess.run([*train, "--out", str(other)], check=True, capture_output=True)
    return [
        ("name leaving the storage path", [*tune, "--name", "../x"], {}),
        ("name with a folder in it", [*tune, "--name", "a/b"], {}),
        ("storage path that is a file", [*tune[:-1], str(work / "a-file")], {}),
        ("storage path from the environment under a file",
         [PY, "-m", "kdgan.tune", "--space", str(space)], {"KDGAN_STORAGE_PATH": str(work / "a-file" / "x")}),
        ("unknown space", [PY, "-m", "kdgan.tune", "--space", "nope"], {}),
        ("misspelt setting", [*tune, "--set", "bta=1"], {}),
        ("setting out of range", [*tune, "--set", "n=0"], {}),
        ("no trials", [*tune, "--num-samples", "0"], {}),
        ("missing dataset", [*tune, "--set", f"dataset={work / 'none.npz'}"], {}),
        ("a GPU per trial on a machine without one", [*tune, "--name", "gpu", "--gpus-per-trial", "1"], {}),
        ("cluster address nobody answers", [*tune, "--address", "127.0.0.1:1"], {}),
        ("cluster address from the environment", [*tune], {"RAY_ADDRESS": "127.0.0.1:1"}),
        ("damaged results part", [*tune, "--name", "damaged"], {}),
        ("damaged optuna.db", [*tune, "--name", "study"], {}),
        ("train: damaged checkpoint", [*train, "--out", str(ckpt)], {}),
        ("train: --out of another config", [*train, "--out", str(other), "--set", "alpha=0.9"], {}),
        ("train: .npz rows that do not match", [*train, "--dataset", str(bad), "--out", str(work / "r")], {}),
        ("train: unknown method", [*train, "--method", "kd", "--out", str(work / "m")], {}),
    ]


def _hold(work: Path) -> subprocess.Popen:
    """A process holding the experiment 'held' as a search does (its lock), until killed."""
    holder = subprocess.Popen(
        [PY, "-c", "import sys, time; from pathlib import Path; from kdgan.experiment import "
                   "ExperimentLock\nwith ExperimentLock(Path(sys.argv[1])):\n print('held', "
                   "flush=True); time.sleep(3600)", str(work / "results" / "held")],
        stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return holder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bad_inputs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kdgan-bad-"))
    atexit.register(shutil.rmtree, work, True)  # the report keeps what was seen
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("RAY_ADDRESS", "KDGAN_STORAGE_PATH")}
    base_env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="kdgan-ray-", dir="/tmp")
    atexit.register(shutil.rmtree, base_env["RAY_TMPDIR"], True)
    cases = [(name, cmd, env, None) for name, cmd, env in _cases(work)]
    cases.append(("experiment held by another search",
                  [PY, "-m", "kdgan.tune", "--space", str(work / "space.yaml"), "--storage-path",
                   str(work / "results"), "--name", "held"], {}, _hold))
    rows = []
    for name, cmd, env, before in cases:
        holder = before(work) if before else None
        t0 = time.time()
        proc = subprocess.run(cmd, env={**base_env, **env}, capture_output=True, text=True, timeout=300)
        seconds = time.time() - t0
        if holder is not None:
            holder.kill()
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in err if line.startswith("error:")]
        first = errors[0] if errors else (err[-1] if err else "")
        ok = proc.returncode != 0 and seconds < 60 and bool(errors) and "Traceback" not in proc.stderr
        shown = " ".join(c if " " not in c else repr(c) for c in cmd[1:]).replace(str(work), "$W")
        rows.append({"case": name, "command": shown + "".join(f" ({k}={v})".replace(str(work), "$W")
                                                               for k, v in env.items()),
                     "exit": proc.returncode, "seconds": round(seconds, 1),
                     "first_line": first.replace(str(work), "$W"), "ok": ok})
        print(f"{'ok ' if ok else 'BAD'} {name}: exit {proc.returncode} in {seconds:.1f}s: {rows[-1]['first_line']}",
              flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Bad inputs", "", "`python -m benchmarks.bad_inputs --out " + str(args.out) + "` "
             "($W is the script's temporary folder)", "",
             "| case | exit | seconds | first line printed |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['exit']} | {r['seconds']} | `{r['first_line']}` |" for r in rows]
    atomic_write(args.out / "report.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    atomic_write(args.out / "report.json", lambda tmp: tmp.write_text(json.dumps(rows, indent=2)))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
