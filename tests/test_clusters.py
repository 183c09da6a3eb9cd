"""clusters/: every YAML passes Ray's own offline checks (what `ray up` runs before it touches
a cloud) and the project's rules; a real two-node search in network namespaces."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

from benchmarks.faults import audit
from conftest import write_blobs_npz
from kdgan.results import ResultsError, read_epochs, read_trials

CLUSTERS = Path(__file__).resolve().parent.parent / "clusters"
LAUNCHER = ["aws-gpu.yaml", "gcp-gpu.yaml", "local.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def _validate(config: dict) -> dict:
    if config.get("kind") == "RayCluster":
        derived = _derive_autoscaling_config_from_ray_cr(config)
        validate_config(derived)
        return derived
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", LAUNCHER + ["kuberay.yaml"])
def test_yaml_passes_rays_validation(name):
    prepared = _validate(_load(name))
    assert prepared["available_node_types"]


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_yaml_follows_the_projects_rules(name):
    cfg = _load(name)
    text = (CLUSTERS / name).read_text()
    starts = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in starts and "0.0.0.0" not in text
    assert "RAY_AUTH_MODE=token" in starts and "disabled" not in text
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    setup = " ".join(cfg["setup_commands"])
    # kdgan[cluster]: kdgan, and ray[default] for the dashboard and job API docs/cluster.md uses
    install = next(c for c in cfg["setup_commands"] if "pip install" in c and "kdgan" in c)
    words = _shell_words(install.split("&&")[0], home="/home/someone")
    assert words[words.index("-e") + 1] == "/home/someone/kdgan[cluster]", words
    storage = setup.split("KDGAN_STORAGE_PATH=")[1].split("'")[0]
    assert storage.startswith(("s3://", "gs://", "/mnt/"))
    if cfg["provider"]["type"] != "local":
        gpu = [t for t in cfg["available_node_types"].values() if t["resources"].get("GPU")]
        assert gpu and all(t["max_workers"] >= 1 for t in gpu)


def _shell_words(command: str, home: str) -> list[str]:
    """The words a POSIX shell makes of `command` (quotes, $HOME, ~ and globs as on a node)."""
    with tempfile.TemporaryDirectory() as empty:
        out = subprocess.run(["sh", "-c", f"set -- {command}; printf '%s\\n' \"$@\""], cwd=empty,
                             env={"HOME": home, "PATH": os.defpath}, capture_output=True,
                             text=True, check=True)
    return out.stdout.splitlines()


def test_shell_words_sees_what_a_node_would():
    assert _shell_words('pip install -e "$HOME/kdgan[cluster]"', "/h")[-1] == "/h/kdgan[cluster]"
    assert _shell_words('pip install -e "~/kdgan[cluster]"', "/h")[-1] == "~/kdgan[cluster]"


def test_pyproject_pins_the_ray_of_the_clusters():
    project = tomllib.loads((CLUSTERS.parent / "pyproject.toml").read_text())["project"]
    assert "ray[tune]==2.60.0" in project["dependencies"]
    extras = project["optional-dependencies"]
    assert extras["cluster"] == ["ray[default]==2.60.0"]  # the dashboard and the job API
    assert "ray[default]==2.60.0" in extras["test"]  # CI runs the dashboard and job tests
    assert 'pip install -e "/home/ray/kdgan[cluster]"' in (CLUSTERS / "kuberay.yaml").read_text()
    cr = _load("kuberay.yaml")
    assert cr["spec"]["rayVersion"] == "2.60.0"
    assert cr["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert cr["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    envs = [e["name"] for e in cr["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]]
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "KDGAN_STORAGE_PATH"} <= set(envs)


@pytest.mark.parametrize("name,breakage", [
    ("aws-gpu.yaml", lambda c: c.pop("provider")),
    ("aws-gpu.yaml", lambda c: c["available_node_types"]["ray.worker.gpu"].update(min_workers="two")),
    ("gcp-gpu.yaml", lambda c: c.update(head_node_type="no_such_type")),
    ("gcp-gpu.yaml", lambda c: c.update(max_workrs=3)),
    ("local.yaml", lambda c: c["provider"].pop("head_ip")),
    ("kuberay.yaml", lambda c: c["spec"]["workerGroupSpecs"][0].pop("groupName")),
])
def test_a_broken_yaml_fails_validation(name, breakage):
    cfg = _load(name)
    breakage(cfg)
    with pytest.raises(Exception):
        _validate(cfg)


# ----------------------------------------------------------------------------- two nodes
# Two Ray nodes on this machine, each in a network namespace of its own joined by a veth pair.
# Every run names its namespaces and interfaces afresh, keeps Ray's files, the token and the
# home folder of every process it starts in a temporary folder, and ends only the processes
# inside its own namespaces: it can run beside any other Ray or test on the machine.
IPS = ("10.77.0.1", "10.77.0.2")  # inside this run's namespaces only
GCS_PORT, DASHBOARD_PORT = 6379, 8265
REPO = CLUSTERS.parent
TESTS = Path(__file__).resolve().parent
REAL_TOKEN = Path.home() / ".ray" / "auth_token"  # the user's, which the tests must not write


def _sh(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def _netns_pids(ns: str) -> list[int]:
    return [int(p) for p in _sh("ip", "netns", "pids", ns, check=False).stdout.split()]


def _namespaces() -> set[str]:
    return {line.split()[0] for line in _sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def _end_namespace(ns: str) -> None:
    """SIGKILL every process inside `ns` (this run's Ray nodes, their workers, its drivers),
    until none is left, then delete the namespace (and the veth end inside it)."""
    deadline = time.time() + 30
    while (pids := _netns_pids(ns)) and time.time() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    _sh("ip", "netns", "del", ns, check=False)


@dataclass
class Nodes:
    """A running two-node cluster: node 0 the head (IPS[0]), node 1 a worker (IPS[1])."""

    ns: tuple[str, str]
    envs: tuple[dict[str, str], dict[str, str]]  # the environment of each node's processes
    token: str
    root: Path

    def cmd(self, node: int, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns[node], *args]

    def run(self, node: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(node, *args), env=self.envs[node], capture_output=True,
                              text=True, timeout=timeout)

    def pids(self, node: int) -> list[int]:
        return _netns_pids(self.ns[node])


def _ray_start(nodes: Nodes, node: int, *args: str) -> None:
    ray = str(Path(sys.executable).with_name("ray"))
    out = nodes.run(node, ray, "start", "--node-ip-address", IPS[node], "--num-cpus", "1",
                    "--disable-usage-stats", *args)
    assert out.returncode == 0, f"ray start on {IPS[node]}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


def _wait_for_two_nodes(nodes: Nodes, timeout: float = 60) -> None:
    """Until the head counts both nodes alive (a trial should not start before the worker)."""
    script = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
              "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.time() + timeout
    while True:
        out = nodes.run(0, sys.executable, "-c", script, f"{IPS[0]}:{GCS_PORT}")
        if out.stdout.strip().endswith("2"):
            return
        assert time.time() < deadline, f"the worker did not join: {out.stdout[-500:]} {out.stderr[-2000:]}"
        time.sleep(1)


@contextlib.contextmanager
def _two_nodes(dashboard: bool = False, node_env: dict[str, str] | None = None):
    if os.geteuid() != 0:
        pytest.skip("not root: cannot create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed")
    suffix = secrets.token_hex(3)
    ns = (f"kdgan-{suffix}-a", f"kdgan-{suffix}-b")
    veth = (f"kdg{suffix}a", f"kdg{suffix}b")  # interface names: 15 characters at most
    # Short: Ray's unix sockets live under RAY_TMPDIR, and a socket path has 107 bytes at most.
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="kdgan-2n-"))
    token_existed = REAL_TOKEN.exists()
    made: list[str] = []
    try:
        for name in ns:
            probe = _sh("ip", "netns", "add", name, check=False)
            if probe.returncode:
                pytest.skip(f"cannot create a network namespace: {probe.stderr.strip()}")
            made.append(name)
        _sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
        for name, dev, ip in zip(ns, veth, IPS):
            _sh("ip", "link", "set", dev, "netns", name)
            _sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            _sh("ip", "netns", "exec", name, "ip", "link", "set", dev, "up")
            _sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        # Token authentication with a token of this run, read from a file of this run; a home
        # folder of its own, so no process writes ~/.ray (or anything else) in the real one.
        token = secrets.token_hex(32)
        token_file = root / "auth_token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        (root / "home").mkdir()
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("RAY_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
                and k != "KDGAN_STORAGE_PATH"}
        base.update(HOME=str(root / "home"), RAY_AUTH_MODE="token",
                    RAY_AUTH_TOKEN_PATH=str(token_file), RAY_USAGE_STATS_ENABLED="0",
                    PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    # this checkout's kdgan (and the tests' fault hooks) in every worker
                    PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), **(node_env or {}))
        envs = tuple({**base, "RAY_TMPDIR": str(root / n)} for n in ("a", "b"))
        for n in ("a", "b"):
            (root / n).mkdir()
        nodes = Nodes(ns, envs, token, root)
        dash = (["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={DASHBOARD_PORT}"] if dashboard else ["--include-dashboard=false"])
        _ray_start(nodes, 0, "--head", "--port", str(GCS_PORT), *dash)
        _ray_start(nodes, 1, "--address", f"{IPS[0]}:{GCS_PORT}")
        _wait_for_two_nodes(nodes)
        yield nodes
    finally:
        for name in made:
            _end_namespace(name)
        if veth[0] in _sh("ip", "-o", "link", "show", check=False).stdout:  # never moved
            _sh("ip", "link", "del", veth[0], check=False)
        shutil.rmtree(root, ignore_errors=True)
    # reached when the test passed or failed, not when setting up failed
    assert not set(ns) & _namespaces(), "a namespace of this test is still there"
    assert token_existed or not REAL_TOKEN.exists(), f"{REAL_TOKEN} was written during the test"


def _dashboard_missing() -> str | None:
    """Why Ray cannot serve the dashboard and the job API here (ray[default] missing), or None."""
    from ray._private.utils import get_dashboard_dependency_error

    error = get_dashboard_dependency_error()
    return error and (f"ray[default] is not installed ({error}): pip install -e '.[test]' "
                      "(or '.[cluster]') brings the dashboard and the job API")


@pytest.fixture(scope="module")
def cluster():
    """Two nodes, the dashboard and job API on the head's loopback (with ray[default]); shared
    by the tests that leave both nodes running."""
    with _two_nodes(dashboard=_dashboard_missing() is None) as nodes:
        yield nodes


SPACE = """
fixed: {{dataset: {data}, n: 60, cls_arch: mlp-small, tch_arch: linear, dis_arch: mlp-small,
        batch_size: 20, pretrain_epochs: 2, dis_pretrain_epochs: 1, epochs: {epochs}, augment: false,
        cls_steps: {steps}, tch_steps: {steps}, dis_steps: {steps}, eval_batch_size: 500}}
search: {{alpha: {{uniform: [0, 1]}}, beta: {{loguniform: [1.0e-3, 1.0e+3]}}}}
smoke: {{epochs: 2, cls_steps: 1, tch_steps: 1, dis_steps: 1}}
"""


def _space(tmp_path: Path, epochs: int = 3, steps: int = 4) -> Path:
    data = write_blobs_npz(tmp_path / "blobs.npz")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE.format(data=data, epochs=epochs, steps=steps))
    return space


@pytest.mark.slow
def test_a_search_runs_on_two_nodes(cluster, tmp_path):
    # the two nodes share this machine's file system: a shared mount, as a cluster needs
    storage = tmp_path / "shared"
    result = cluster.run(0, sys.executable, "-m", "kdgan.tune", "--space", str(_space(tmp_path)),
                         "--num-samples", "6", "--address", f"{IPS[0]}:{GCS_PORT}",
                         "--storage-path", str(storage), "--name", "two-nodes", timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = pd.read_parquet(storage / "two-nodes" / "trials.parquet")
    assert len(trials) == 6 and (trials["status"] == "TERMINATED").all()
    per_node = trials.groupby("node_ip")["trial_id"].count()
    print("trials per node:", per_node.to_dict())
    assert set(per_node.index) == set(IPS), per_node
    assert trials["node_id"].nunique() == 2


# A GET from inside a namespace, without proxies: (status, body) or (None, the error).
FETCH = r"""
import json, sys, urllib.error, urllib.request
url, token = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(headers):
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, f"{type(e).__name__}: {e}"
print(json.dumps({"anonymous": get({}), "token": get({"Authorization": "Bearer " + token})}))
"""


def _fetch(nodes: Nodes, node: int, url: str) -> dict:
    out = nodes.run(node, sys.executable, "-c", FETCH, url, nodes.token, timeout=30)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _wait_for_dashboard(nodes: Nodes, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        got = _fetch(nodes, 0, f"http://127.0.0.1:{DASHBOARD_PORT}/api/version")
        if got["token"][0] == 200 or time.time() > deadline:
            return got
        time.sleep(1)


@pytest.mark.slow
def test_the_dashboard_serves_on_the_heads_loopback_with_token_auth(cluster):
    if _dashboard_missing():  # a failure, not a skip: CI installs .[test] and must run this
        pytest.fail(_dashboard_missing())
    got = _wait_for_dashboard(cluster)
    assert got["token"][0] == 200, got
    assert json.loads(got["token"][1])["ray_version"] == "2.60.0"
    assert got["anonymous"][0] == 401, got  # the token guards the HTTP API as well
    # from the other node, the head's address: nothing listens there for the dashboard ...
    remote = _fetch(cluster, 1, f"http://{IPS[0]}:{DASHBOARD_PORT}/api/version")
    assert remote["token"][0] is None and "Connection refused" in remote["token"][1], remote
    # ... while the network between the nodes works (the GCS port answers)
    probe = cluster.run(1, sys.executable, "-c", "import socket, sys; "
                        "socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)",
                        IPS[0], str(GCS_PORT))
    assert probe.returncode == 0, probe.stderr[-1000:]


@pytest.mark.slow
def test_a_smoke_search_submitted_through_the_job_api(cluster, tmp_path):
    if _dashboard_missing():
        pytest.fail(_dashboard_missing())
    assert _wait_for_dashboard(cluster)["token"][0] == 200
    storage = tmp_path / "shared"
    ray = str(Path(sys.executable).with_name("ray"))
    job_id = f"kdgan-smoke-{secrets.token_hex(3)}"
    # as docs/cluster.md: RAY_AUTH_MODE=token and the token in the CLI's environment
    out = cluster.run(0, ray, "job", "submit", "--address", f"http://127.0.0.1:{DASHBOARD_PORT}",
                      "--submission-id", job_id, "--", "python", "-m", "kdgan.tune",
                      "--space", str(_space(tmp_path)), "--smoke", "--address", "auto",
                      "--storage-path", str(storage), "--name", "job-smoke", timeout=400)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    status = cluster.run(0, ray, "job", "status", "--address",
                         f"http://127.0.0.1:{DASHBOARD_PORT}", job_id)
    assert f"Job '{job_id}' succeeded" in status.stdout, status.stdout + status.stderr
    trials = pd.read_parquet(storage / "job-smoke" / "trials.parquet")
    assert len(trials) == 4 and (trials["status"] == "TERMINATED").all()  # --smoke: 4 trials
    assert (trials["epochs"] == 2).all()  # the space's smoke budget
    # without the token the job API refuses
    anonymous = _fetch(cluster, 0, f"http://127.0.0.1:{DASHBOARD_PORT}/api/jobs/")
    assert anonymous["anonymous"][0] == 401 and anonymous["token"][0] == 200, anonymous


def _parts(read, experiment: Path) -> pd.DataFrame:
    """The parts of a running search as they are now (a part replaced while being read
    is read again at the next poll)."""
    try:
        return read(experiment)
    except (ResultsError, OSError):
        return pd.DataFrame()


@pytest.mark.slow
def test_a_node_dies_and_the_search_goes_on(tmp_path):
    """One trial per node at a time; when a trial on the worker reaches epoch 8, every process
    of the worker's namespace gets SIGKILL (a machine lost). The search ends with every trial
    TERMINATED and every epoch row once, and the files say what happened to the trial."""
    epochs_total, samples, kill_at = 25, 6, 8
    space = _space(tmp_path, epochs=epochs_total, steps=1)
    storage = tmp_path / "shared"
    experiment = storage / "node-death"
    log = tmp_path / "driver.log"
    # each epoch 0.25 s longer: the trial cannot run on from epoch 8 to its end unnoticed
    slow = {"KDGAN_EPOCH_HOOK": "faults:slow_epochs", "KDGAN_EPOCH_SLEEP": "0.25"}
    with _two_nodes(node_env=slow) as nodes, open(log, "w") as out:
        driver = subprocess.Popen(
            nodes.cmd(0, sys.executable, "-m", "kdgan.tune", "--space", str(space),
                      "--num-samples", str(samples), "--address", f"{IPS[0]}:{GCS_PORT}",
                      "--checkpoint-every", "5", "--storage-path", str(storage),
                      "--name", "node-death"),
            env=nodes.envs[0], stdout=out, stderr=subprocess.STDOUT)
        try:
            # 400 s as the other waits here: 180 s ran out with the machine's two cores busy
            victim, deadline = None, time.time() + 400
            while victim is None:
                assert driver.poll() is None, log.read_text()[-4000:]
                assert time.time() < deadline, "no trial reached epoch 8 on the worker"
                epochs = _parts(read_epochs, experiment)
                if "node_ip" in epochs:
                    there = epochs[(epochs["node_ip"] == IPS[1]) & (epochs["epoch"] >= kill_at)]
                    if not there.empty:
                        victim = there["trial_id"].iloc[0]
                        reached = int(epochs.loc[epochs["trial_id"] == victim, "epoch"].max())
                time.sleep(0.1)
            killed = time.time()
            while pids := nodes.pids(1):  # the raylet, its agents and workers: the node is gone
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                assert time.time() < killed + 30, f"processes survive in {nodes.ns[1]}: {pids}"
                time.sleep(0.05)
            # Ray noticed: Tune's failure of the trial is in its part; back: the trial reported
            # from the head (once the head's one CPU is free)
            noticed_s = back_s = None
            while back_s is None and time.time() < killed + 180 and driver.poll() is None:
                row = _parts(read_trials, experiment)
                row = row[row["trial_id"] == victim] if "trial_id" in row else pd.DataFrame()
                if not row.empty:
                    row = row.iloc[0]
                    if noticed_s is None and (row["failures"] >= 1 or row["lives"] >= 2):
                        noticed_s = time.time() - killed
                    if IPS[0] in str(row["node_ips"]).split(","):
                        back_s = time.time() - killed
                time.sleep(0.1)
            driver.wait(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert driver.returncode == 0, log.read_text()[-4000:]
    trials = pd.read_parquet(experiment / "trials.parquet")
    epochs = pd.read_parquet(experiment / "epochs.parquet")
    assert len(trials) == samples and (trials["status"] == "TERMINATED").all(), trials["status"]
    expected = list(range(epochs_total + 1))  # epoch 0 is the pretraining
    assert len(epochs) == samples * len(expected)
    for trial_id, group in epochs.groupby("trial_id"):
        assert sorted(group["epoch"].astype(int)) == expected, trial_id
    killed_row = trials.set_index("trial_id").loc[victim]
    assert killed_row["failures"] >= 1 or killed_row["lives"] >= 2, killed_row
    # Both namespaces share the machine's hostname, so `nodes` names one host; the node
    # addresses tell the worker it started on from the head it finished on.
    assert killed_row["node_ips"].split(",") == [IPS[1], IPS[0]], killed_row["node_ips"]
    assert len(killed_row["nodes"].split(",")) == 1  # one hostname for both
    assert set(epochs.loc[epochs["trial_id"] == victim, "node_ip"]) == set(IPS)
    assert noticed_s is not None and back_s is not None
    report = audit(experiment, samples)
    assert report["trials"] == report["tune_trials"] == report["optuna_trials"] == samples, report
    for key in ("trials_duplicated", "epoch_rows_duplicated", "epoch_rows_lost", "trials_lost",
                "trials_not_finished", "optuna_running"):
        assert report[key] == 0, (key, report)
    assert report["compacted_matches_parts"] and report["tune_matches_parquet"], report
    retried = int(((trials["failures"] >= 1) | (trials["lives"] >= 2)).sum())
    print(f"node death: trial {victim} killed at epoch {reached} on {IPS[1]}; Ray noticed after "
          f"{noticed_s:.1f} s (its failure in the parts), the trial reported again from "
          f"{IPS[0]} after {back_s:.1f} s; trials retried {retried}; "
          f"rows lost {report['epoch_rows_lost']}, duplicated {report['epoch_rows_duplicated']}; "
          f"search {json.loads((experiment / 'search.json').read_text())[-1]['wall_s']:.0f} s")
