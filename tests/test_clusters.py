"""clusters/: every YAML passes Ray's own offline checks (what `ray up` runs before it touches
a cloud) and the project's rules; a real two-node search in network namespaces."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

from conftest import write_blobs_npz

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
NS = ("kdgan-test-a", "kdgan-test-b")
IPS = ("10.77.0.1", "10.77.0.2")


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def _netns_usable() -> str | None:
    if os.geteuid() != 0:
        return "not root: cannot create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = _sh("ip", "netns", "add", "kdgan-probe", check=False)
    if probe.returncode:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    _sh("ip", "netns", "del", "kdgan-probe", check=False)
    return None


def _teardown() -> None:
    for ns in NS:  # every process inside the namespace: both Ray nodes and their workers
        pids = _sh("ip", "netns", "pids", ns, check=False).stdout.split()
        if pids:
            subprocess.run(["kill", "-9", *pids], check=False)
    time.sleep(0.5)
    for ns in NS:
        _sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def two_nodes():
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    _teardown()
    _sh("ip", "netns", "add", NS[0])
    _sh("ip", "netns", "add", NS[1])
    _sh("ip", "link", "add", "kdgan-va", "type", "veth", "peer", "name", "kdgan-vb")
    for ns, dev, ip in zip(NS, ("kdgan-va", "kdgan-vb"), IPS):
        _sh("ip", "link", "set", dev, "netns", ns)
        _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    ray = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run(["ip", "netns", "exec", NS[0], ray, "start", "--head", "--node-ip-address",
                        IPS[0], "--port", "6379", "--num-cpus", "1", "--include-dashboard", "false",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["ip", "netns", "exec", NS[1], ray, "start", "--address", f"{IPS[0]}:6379",
                        "--node-ip-address", IPS[1], "--num-cpus", "1", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=120)
        yield env
    finally:
        _teardown()
        assert not any(ns in _sh("ip", "netns", "list").stdout for ns in NS)


def test_a_search_runs_on_two_nodes(two_nodes, tmp_path):
    data = write_blobs_npz(tmp_path / "blobs.npz")
    space = tmp_path / "space.yaml"
    space.write_text(f"""
fixed: {{dataset: {data}, n: 60, cls_arch: mlp-small, tch_arch: linear, dis_arch: mlp-small,
        batch_size: 20, pretrain_epochs: 2, dis_pretrain_epochs: 1, epochs: 3, augment: false,
        cls_steps: 4, tch_steps: 4, dis_steps: 4, eval_batch_size: 500}}
search: {{alpha: {{uniform: [0, 1]}}, beta: {{loguniform: [1.0e-3, 1.0e+3]}}}}
""")
    # the two nodes share this machine's file system: a shared mount, as a cluster needs
    storage = tmp_path / "shared"
    result = subprocess.run(
        ["ip", "netns", "exec", NS[0], sys.executable, "-m", "kdgan.tune", "--space", str(space),
         "--num-samples", "6", "--address", f"{IPS[0]}:6379", "--storage-path", str(storage),
         "--name", "two-nodes"], env=two_nodes, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = pd.read_parquet(storage / "two-nodes" / "trials.parquet")
    assert len(trials) == 6 and (trials["status"] == "TERMINATED").all()
    per_node = trials.groupby("node_ip")["trial_id"].count()
    print("trials per node:", per_node.to_dict())
    assert set(per_node.index) == set(IPS), per_node
    assert trials["node_id"].nunique() == 2
