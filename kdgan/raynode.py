"""Ray for a search: started inside this process with every socket on loopback, or joined
at a cluster's address within a deadline; and the wait for a node that can run a trial.

Imported by kdgan.tune only (the one module that drives Ray).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
import time
from typing import Any


class SearchError(RuntimeError):
    """The search cannot start or go on (no node for a trial, no cluster); one line."""


LOOPBACK = "127.0.0.1"
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# One token per process: Ray's token loader caches the first token it reads.
_PROCESS_TOKEN = secrets.token_hex(32)


@contextlib.contextmanager
def _environ(values: dict[str, str], restore: tuple[str, ...] = ()):
    """Set `values` in os.environ; on exit put back those keys and `restore` as they were."""
    saved = {k: os.environ.get(k) for k in (*values, *restore)}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def local_ray(**init_kwargs: Any):
    """Ray inside this process, every socket of it on loopback, with token authentication
    whose token lives in memory; shut down (and the environment restored) on exit.

    Loopback: Ray binds its gRPC servers to 127.0.0.1 only when the node's address is
    127.0.0.1, and it turns a requested 127.0.0.1 into the machine's routable address unless
    `ray._private.ray_constants.ENABLE_RAY_CLUSTER` is false. That constant is read from
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, when Ray is first imported, so setting the
    variable here is too late whenever Ray is already imported (kdgan.results imports it).
    Both are set for the start alone: the constant for this process, the variable for the
    processes Ray starts (GCS, raylet, agents and workers inherit it). The node's address is
    checked afterwards, so a Ray that ignored both fails here instead of listening on the
    network.

    Niceness: Ray adds 15 to its workers' niceness (`RAY_worker_niceness`, an increment);
    unless the user set that variable, the trials get the niceness of the process that
    started the search.

    Token: a local `ray.init()` turns token authentication on and, without a token, writes
    one to ~/.ray/auth_token, after which every `ray start --head` on the machine requires
    it. Unless the user chose (RAY_AUTH_MODE, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH set),
    the search's Ray gets a random token through the environment instead, and nothing is
    written to the home folder.
    """
    import ray
    from ray._private import ray_constants

    if not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):  # guarded by a test as well
        raise RuntimeError("this Ray has no ray._private.ray_constants.ENABLE_RAY_CLUSTER: "
                           "kdgan cannot keep the in-process Ray on loopback")
    env = {_CLUSTER_ENV: "0"}
    if "RAY_worker_niceness" not in os.environ:
        # Ray adds 15 to its workers' niceness, so anything else on the machine starves the
        # trials; they run at the niceness the search was started with (`nice` still works)
        env["RAY_worker_niceness"] = "0"
    if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        # With the mode unset, ray.init turns token mode on itself (for this process and the
        # ones it starts) and, finding this token, writes none to the home folder.
        env["RAY_AUTH_TOKEN"] = _PROCESS_TOKEN
    # Restored on exit (RAY_AUTH_MODE too, which ray.init sets): a Ray cluster this process
    # starts later (`ray start` in a subprocess) may take other nodes and choose its own auth.
    with _environ(env, restore=("RAY_AUTH_MODE",)):
        saved = ray_constants.ENABLE_RAY_CLUSTER
        ray_constants.ENABLE_RAY_CLUSTER = False
        try:
            ray.init(address="local", _node_ip_address=LOOPBACK, include_dashboard=False,
                     configure_logging=False, log_to_driver=False, **init_kwargs)
        finally:
            ray_constants.ENABLE_RAY_CLUSTER = saved
        try:
            node_ip = ray.util.get_node_ip_address()
            if node_ip != LOOPBACK:
                raise RuntimeError(f"the in-process Ray took address {node_ip}, not {LOOPBACK}:"
                                   " refusing to run a search that listens on the network")
            yield
        finally:
            ray.shutdown()


def _probe(address: str, deadline: float) -> None:
    """Wait until something accepts TCP connections at `address` (host:port), or fail at
    the deadline: ray.init on an address nobody answers retries without end."""
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address!r}: expected 'auto' or host:port")
    last = ""
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError as e:
            last = str(e)
        if time.time() >= deadline:
            raise SearchError(f"--address {address}: no Ray cluster answers there ({last}); "
                              "is the head up (`ray status` on it)? --connect-timeout sets the wait")
        time.sleep(1)


@contextlib.contextmanager
def connect(address: str | None, timeout_s: float):
    """Join the cluster at `address` within `timeout_s`, or start Ray here on loopback;
    shut down on exit."""
    import ray

    if not address:
        with local_ray():
            yield
        return
    deadline = time.time() + timeout_s
    target = address
    if address == "auto":
        from ray._private import services  # how ray.init itself finds 'auto'

        try:
            target = services.get_ray_address_from_environment("auto", None)
        except ConnectionError:
            target = None
        if not target:
            raise SearchError("--address auto: no running Ray cluster found on this machine "
                              "(start one with `ray start --head` or `ray up`)")
    _probe(target, deadline)
    # The port answers; ray.init should not hang now, but a watchdog makes sure it cannot.
    watchdog = threading.Timer(max(deadline - time.time(), 0) + 30, _give_up, (address,))
    watchdog.daemon = True
    watchdog.start()
    try:
        ray.init(address=address)
    finally:
        watchdog.cancel()
    try:
        yield
    finally:
        ray.shutdown()


def _give_up(address: str) -> None:
    print(f"error: --address {address}: Ray did not finish connecting; check that the cluster "
          "runs the same Ray version (`ray status` on the head)", file=sys.stderr, flush=True)
    os._exit(1)


def wait_for_resources(cpus: float, gpus: float, timeout_s: float, local: bool) -> None:
    """Until a live node can hold one trial; at once for the in-process Ray (its resources
    never change), within `timeout_s` on a cluster (an autoscaler may add the node)."""
    import ray

    deadline = time.time() + timeout_s
    while True:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if any(n["Resources"].get("CPU", 0) >= cpus and n["Resources"].get("GPU", 0) >= gpus
               for n in nodes):
            return
        if local or time.time() >= deadline:
            have = "; ".join(f"{n.get('NodeManagerAddress')}: {n['Resources'].get('CPU', 0):g} CPU, "
                             f"{n['Resources'].get('GPU', 0):g} GPU" for n in nodes) or "no live node"
            waited = "" if local else f" after {timeout_s:g} s (--wait-resources)"
            raise SearchError(f"no node can run a trial with --cpus-per-trial {cpus:g} "
                              f"--gpus-per-trial {gpus:g}{waited}; nodes: {have}")
        time.sleep(2)
