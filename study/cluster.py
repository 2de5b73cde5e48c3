"""Ray itself: start a local instance or attach to a cluster, and size a trial against its nodes.

Only `ray` is imported here (about a second), so study/run.py can start Ray while torch,
Lightning and Ray Tune are imported and the data is read (see run.py). Errors a user can fix are
`ConfigError`s, whose message is one line.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import ray
import yaml

from study.config import ConfigError, StudyConfig
from trainables import tasks

DEFAULT_GPU_FRACTION = 0.25  # four trials share one GPU: LeNet uses a sliver of one
BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # written by `ray up` on the head node


def _drop_token_auth_notice(record: logging.LogRecord) -> bool:
    """Ray announces, on every local start, that token auth is on by default: the secure default
    needs no line of its own on stderr (where errors must stay one line). Warnings that auth is
    *disabled* still show."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def connect(config: StudyConfig) -> bool:
    """Start a local Ray instance, or attach to the cluster at --address; True. The user's task
    folders and packages go to every node with the job (runtime_env's py_modules: trainables/tasks.py
    `ship`). A Ray already running in this process (the user's own `ray.init`) is used as it is: False."""
    if ray.is_initialized():
        return False
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_drop_token_auth_notice)
    unreachable = _unreachable(config.address) if config.address else None
    if unreachable:  # Ray itself retries an unreachable HOST:PORT for about 14 minutes
        raise ConfigError(f"cannot reach --address {config.address}: {unreachable}")
    runtime_env = {"env_vars": {"TQDM_DISABLE": "1"}}  # lr_find draws a progress bar per step into every trial's log
    shipped = tasks.ship(config.task)
    if shipped:  # each task's folder (its siblings with it), found on a node by its place in this list
        runtime_env.update(py_modules=shipped, excludes=list(tasks.SHIP_EXCLUDES))
        runtime_env["env_vars"][tasks.SHIPPED_ENV] = json.dumps(shipped)
    try:
        ray.init(address=config.address, include_dashboard=False if config.address is None else None,
                 log_to_driver=True, configure_logging=True, logging_level="WARNING", runtime_env=runtime_env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--address {config.address}" if config.address else "a local Ray instance"
        raise ConfigError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return True


def disconnect() -> None:
    """Stop the local Ray instance (or detach from the cluster): timed on its own by run.py."""
    ray.shutdown()


def _unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a HOST:PORT address takes no TCP connection, or None (also for 'auto' and ray:// URIs)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()  # [::1]:6379 too
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    return None


def trial_resources(config: StudyConfig, bootstrap_config: Path = BOOTSTRAP_CONFIG) -> dict[str, float]:
    """CPUs and GPUs per trial, checked against the nodes Ray sees and, on a cluster started by
    `ray up`, the node types its autoscaler may still start (GPU workers at min_workers 0)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    max_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    max_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    gpus = config.gpus_per_trial
    if gpus is None:  # a GPU study is explicit where no GPU node is up yet
        gpus = DEFAULT_GPU_FRACTION if max_gpus else 0.0
    need = {"CPU": config.cpus_per_trial, "GPU": gpus}
    launchable = _launchable_node_types(bootstrap_config)
    if any(_fits(n, need) for n in nodes + list(launchable.values())):
        return {"cpu": config.cpus_per_trial, "gpu": gpus}
    also = f"; nor can the autoscaler start one ({_describe(launchable)})" if launchable else ""
    if config.cpus_per_trial > max_cpus:
        raise ConfigError(f"--cpus-per-trial {config.cpus_per_trial} is more than any node has (largest: {max_cpus:g} CPUs){also}")
    if gpus > max_gpus:
        raise ConfigError(f"--gpus-per-trial {gpus:g} is more than any node has (largest: {max_gpus:g} GPUs){also}")
    raise ConfigError(f"no node has both {config.cpus_per_trial} CPUs and {gpus:g} GPUs for a trial{also}")


def trial_slots(resources: dict[str, float]) -> int:
    """How many trials of `resources` (trial_resources' answer) the cluster runs at once: its CPUs
    per trial's CPUs, and its GPUs per trial's GPUs where a trial takes some; at least 1."""
    total = ray.cluster_resources()
    slots = int(total.get("CPU", 0) / resources["cpu"] + 1e-9)
    if resources.get("gpu"):
        slots = min(slots, int(total.get("GPU", 0) / resources["gpu"] + 1e-9))
    return max(1, slots)


def _fits(resources: dict, need: dict) -> bool:
    return all(resources.get(k, 0) >= v for k, v in need.items())


def _launchable_node_types(bootstrap_config: Path) -> dict[str, dict]:
    """Resources of each worker node type the autoscaler may start, from the cluster launcher's
    config on the head node (Ray Tune reads the same file to tell an autoscaling cluster)."""
    try:
        cluster = yaml.safe_load(bootstrap_config.expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    types = cluster.get("available_node_types") if isinstance(cluster, dict) else None
    return {name: t.get("resources") or {} for name, t in (types or {}).items()
            if isinstance(t, dict) and (t.get("max_workers") or 0) > 0}


def _describe(node_types: dict[str, dict]) -> str:
    return ", ".join(f"{name}: {r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for name, r in node_types.items())
