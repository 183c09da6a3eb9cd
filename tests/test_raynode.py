"""kdgan.raynode: the default search (Ray inside the process) listens on loopback only, and
its trials run at the search's own niceness."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from kdgan.results import TRIALS

from conftest import write_blobs_npz
from test_tune import SPACE



def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return (mapped or addr).is_loopback
# Ray imported before kdgan.tune, as a notebook or a user's script would: the setting Ray
# reads at import is then fixed before kdgan can touch it.
DRIVER = """
import sys
import ray  # noqa: F401
from kdgan import tune
sys.exit(tune.main(sys.argv[1:]))
"""


def _ray_pids(driver: int, ray_tmp: str) -> set[int]:
    pids = {driver}
    try:
        pids |= {p.pid for p in psutil.Process(driver).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(ray_tmp in arg for arg in (p.info["cmdline"] or [])):
                pids.add(p.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return pids


@pytest.mark.slow
def test_the_in_process_search_listens_on_loopback_only(tmp_path, short_tmp):
    data = write_blobs_npz(tmp_path / "blobs.npz")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(data=data, epochs=6, extra=""))
    home = tmp_path / "home"
    home.mkdir()
    ray_tmp = str(short_tmp)
    # a plain environment: no RAY_* variable, a home of its own
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "RAY_TMPDIR": ray_tmp,
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [sys.executable, "-c", DRIVER, "--space", str(space), "--num-samples", "2",
           "--concurrency", "2", "--storage-path", str(tmp_path / "results"), "--name", "lo"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    listening: dict[tuple[str, int], str] = {}
    niceness: dict[int, int] = {}  # Ray's workers' (the trials run in them)
    driver_nice = psutil.Process(proc.pid).nice()
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        pids = _ray_pids(proc.pid, ray_tmp)
        for pid in pids:
            try:
                p = psutil.Process(pid)
                if "default_worker.py" in " ".join(p.cmdline()) or p.name().startswith("ray::"):
                    niceness[pid] = p.nice()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        for c in psutil.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN and c.pid in pids:
                try:
                    name = psutil.Process(c.pid).name()
                except psutil.NoSuchProcess:
                    name = "?"
                listening[(c.laddr.ip, c.laddr.port)] = name
        time.sleep(0.3)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    names = set(listening.values())
    # the probe saw Ray's servers and a trial worker, so it could have seen a wrong address
    assert any("gcs" in n for n in names) and any("raylet" in n for n in names), listening
    assert len(listening) >= 4, listening
    exposed = {addr: name for addr, name in listening.items() if not _loopback(addr[0])}
    assert not exposed, f"listening beyond loopback: {exposed}"
    trials = pd.read_parquet(tmp_path / "results" / "lo" / TRIALS)
    assert (trials["node_ip"] == "127.0.0.1").all(), trials["node_ip"].tolist()
    assert not (home / ".ray").exists()
    # the trials run at the search's own priority, not Ray's default of 15 more
    assert niceness and set(niceness.values()) == {driver_nice}, (driver_nice, niceness)
