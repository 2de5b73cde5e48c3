"""Real Ray clusters on this machine, no cloud: cluster.yaml against Ray's schema, token auth, the
smoke study on a two-node cluster, and `ray up` ... `ray down` through Ray's `local` provider.

Each cluster is killed whatever happens, and only it: nodes run in their own process groups, and
the `ray up` machine is an sshd in its own PID, mount and network namespaces, so the `ray stop`
that `ray down` runs there cannot reach any other Ray on this machine. Tests never run `ray stop`.

Needs root, openssh-server, openssh-client, rsync, iproute2 and util-linux (unshare, nsenter);
missing ones skip the test on a workstation and fail it under CI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from conftest import REPO, real_data_dir
from study.config import ConfigError

pytestmark = pytest.mark.cluster

RAY = str(Path(sys.executable).with_name("ray"))  # the CLI of the environment running the tests
CLUSTER_YAML = REPO / "cluster.yaml"
SMOKE_TRIALS = 7  # --smoke: 5 manual LRs + one finder trial per default rule (lightning, valley)


def require(*tools: str, root: bool = False) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if root and os.geteuid() != 0:
        missing.append("root")
    if missing:
        message = f"missing prerequisites: {', '.join(missing)} (see tests/test_cluster.py docstring)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run(cmd: list[str], env: dict | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


def tail(proc: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-n:]}\n--- stderr\n{proc.stderr[-n:]}"


def trial_rows(experiment: Path) -> dict[str, list[dict]]:
    """Every trial folder's result.json rows (JSON lines), by folder name."""
    return {f.parent.name: [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            for f in sorted(experiment.glob("*/result.json"))}


# -- 1. cluster.yaml ------------------------------------------------------------------------------

def load_cluster_yaml() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_ray_schema_and_a_broken_copy_fails():
    validate_config(prepare_config(load_cluster_yaml()))
    for where in ("top", "node_type"):
        broken = load_cluster_yaml()
        target = broken if where == "top" else broken["available_node_types"]["gpu_worker"]
        target["not_a_ray_key"] = 1
        with pytest.raises(Exception, match="not_a_ray_key"):
            validate_config(prepare_config(broken))


def test_cluster_yaml_is_secure_by_default():
    config = load_cluster_yaml()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])
    # The token comes from the user's home at start-up, never from the repository.
    assert config["file_mounts"]["~/.ray/auth_token"].startswith("~/")
    # A security group the user made (SSH from their IP), not Ray's default one (SSH from anywhere).
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"]["SecurityGroupIds"]
    assert "security_group" not in config["provider"]
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["node_config"]["InstanceType"].startswith(("g4dn.", "g5."))


@pytest.fixture
def local_ray(tmp_path, monkeypatch):
    """Ray in this process, 1 CPU and no GPU; its token file goes to a scratch HOME."""
    import ray

    monkeypatch.setenv("HOME", str(tmp_path))
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def bootstrap_config(tmp_path: Path, **gpu_worker) -> Path:
    """cluster.yaml as `ray up` leaves it on the head (~/ray_bootstrap_config.yaml), with the
    resources Ray's launcher fills in for a g4dn.xlarge."""
    config = load_cluster_yaml()
    config["available_node_types"]["gpu_worker"].update({"resources": {"CPU": 4, "GPU": 1}, **gpu_worker})
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_gpu_trials_wait_for_the_autoscaler_where_it_can_start_gpu_nodes(local_ray, tmp_path):
    """No GPU node is up (cluster.yaml's gpu_worker has min_workers 0): a GPU study is accepted
    when the autoscaler may start a GPU node, refused in one line otherwise."""
    from study.config import StudyConfig
    from study.cluster import trial_resources

    gpu = StudyConfig(gpus_per_trial=0.25)
    assert trial_resources(gpu, bootstrap_config(tmp_path)) == {"cpu": 1, "gpu": 0.25}
    assert trial_resources(StudyConfig(), bootstrap_config(tmp_path)) == {"cpu": 1, "gpu": 0.0}  # GPUs: explicit
    assert trial_resources(StudyConfig(cpus_per_trial=4), bootstrap_config(tmp_path)) == {"cpu": 4, "gpu": 0.0}
    with pytest.raises(ConfigError, match=r"^--gpus-per-trial 2 is more than any node has \(largest: 0 GPUs\); "
                                          r"nor can the autoscaler start one \(gpu_worker: 4 CPUs, 1 GPUs\)$"):
        trial_resources(StudyConfig(gpus_per_trial=2), bootstrap_config(tmp_path))
    with pytest.raises(ConfigError, match=r"^--gpus-per-trial 0.25 is more than any node has \(largest: 0 GPUs\)$"):
        trial_resources(gpu, bootstrap_config(tmp_path, max_workers=0))  # the autoscaler may not start one
    with pytest.raises(ConfigError, match=r"^--gpus-per-trial 0.25 is more than any node has"):
        trial_resources(gpu, tmp_path / "missing.yaml")  # not a `ray up` cluster


# -- a local multi-node cluster -------------------------------------------------------------------

class LocalCluster:
    """Ray nodes on this machine in token mode, each `ray start` in its own process group.

    RAY_TMPDIR is a short private folder (Ray's socket paths must stay under 108 characters), so
    nothing lands in /tmp/ray; the token lives in a file of its own, never ~/.ray/auth_token.
    """

    def __init__(self, workdir: Path):
        self.token = workdir / "auth_token"
        self.token.write_text(secrets.token_hex(32))
        self.tmp = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token), RAY_TMPDIR=str(self.tmp))
        self.groups: list[int] = []
        self.address: str | None = None

    def add_node(self, cpus: int = 1, hide: Path | None = None) -> None:
        """The first node is the head; each node gets `cpus` CPUs and its own free ports. `hide`: the
        node runs in a mount namespace of its own where that folder is an empty tmpfs."""
        agent, grpc, metrics, runtime_env, gcs, dashboard, client = free_ports(7)
        if self.address is None:
            role = ["--head", f"--port={gcs}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
                    "--include-dashboard=false"]
        else:
            role = [f"--address={self.address}"]
        cmd = [RAY, "start", *role, f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}"]
        if hide is not None:  # the node's processes live on in the namespace after `ray start` returns
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hide), *cmd]
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.groups.append(proc.pid)  # the node's processes keep this process group
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{out[-4000:]}"
        if self.address is None:
            self.address = f"127.0.0.1:{gcs}"

    def stop(self) -> None:
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def local_cluster(tmp_path):
    require(RAY)
    cluster = LocalCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


CONNECT = "import ray, sys; ray.init(address=sys.argv[1]); print('connected to', len(ray.nodes()), 'node(s)')"


@pytest.mark.slow
def test_token_auth_refuses_a_client_without_the_token(local_cluster, tmp_path):
    local_cluster.add_node()
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    base = {k: v for k, v in local_cluster.env.items() if not k.startswith("RAY_AUTH")}
    base.update(HOME=str(tmp_path), RAY_gcs_server_port_wait_time_s="3")  # no ~/.ray/auth_token; refuse fast
    clients = {
        "no token": base,
        "wrong token": {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)},
        "the token": {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(local_cluster.token)},
    }
    results = {name: run([sys.executable, "-c", CONNECT, local_cluster.address], env, timeout=120)
               for name, env in clients.items()}
    for name in ("no token", "wrong token"):
        proc = results[name]
        assert proc.returncode != 0 and "InvalidAuthToken" in proc.stdout + proc.stderr, f"{name}: {tail(proc)}"
    assert results["the token"].returncode == 0, tail(results["the token"])
    assert "connected to 1 node(s)" in results["the token"].stdout


@pytest.mark.slow
def test_smoke_study_spreads_over_two_nodes(local_cluster, tmp_path):
    data_dir = real_data_dir()
    local_cluster.add_node()
    local_cluster.add_node()
    proc = run([sys.executable, "-m", "study.run", "--smoke", "--address", local_cluster.address,
                "--results-dir", str(tmp_path / "results"), "--name", "c", "--data-dir", str(data_dir)],
               local_cluster.env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, tail(proc)
    trials = trial_rows(tmp_path / "results" / "c")
    assert len(trials) == SMOKE_TRIALS and all(trials.values()), sorted(trials)
    nodes = {row["node_id"] for rows in trials.values() for row in rows}
    assert all(row["node_ip"] for rows in trials.values() for row in rows)
    assert len(nodes) >= 2, f"every trial ran on one node: {nodes}"


@pytest.mark.slow
def test_a_users_task_folders_are_shipped_to_a_node_that_cannot_see_them(local_cluster, tmp_path):
    """Two task files of one stem, mine/a/task.py (examples/my_task.py) and mine/b/task.py (its model
    in a sibling module, `from nets import model`), live in a folder outside the repository that the
    worker node does not see (its own mount namespace, the folder under an empty tmpfs); the head
    takes no trial. Every trial runs there all the same: Ray ships each task's folder with the job
    (runtime_env's py_modules), and each trial trains its own task, two settings."""
    require("unshare", root=True)
    mine = tmp_path / "mine"
    (mine / "a").mkdir(parents=True)
    (mine / "a" / "task.py").write_text((REPO / "examples" / "my_task.py").read_text())
    (mine / "b").mkdir()
    (mine / "b" / "nets.py").write_text("from torch import nn\n\ndef model():\n    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))\n")
    (mine / "b" / "task.py").write_text((REPO / "examples" / "my_task.py").read_text().replace("from torch import nn\n", "from torch import nn\nfrom nets import model as sibling\n")
                                        .replace("TASK = SimpleNamespace(model=model,", "TASK = SimpleNamespace(model=sibling,"))
    a, b = f"{mine / 'a' / 'task.py'}:TASK", f"{mine / 'b' / 'task.py'}:TASK"
    local_cluster.add_node(cpus=0)
    local_cluster.add_node(hide=mine)
    proc = run([sys.executable, "-m", "study.run", "--task", f"{a},{b}", "--smoke", "--arms", "finder,manual",
                "--finder-rules", "valley", "--lrs", "0.1", "--address", local_cluster.address,
                "--results-dir", str(tmp_path / "results"), "--name", "shipped"], local_cluster.env, timeout=900, cwd=REPO)
    assert proc.returncode == 0, tail(proc)
    trials = trial_rows(tmp_path / "results" / "shipped")
    assert sorted((folder.split("_s0_")[0], rows[-1]["task"]) for folder, rows in trials.items()) == [
        ("finder-valley_a.task.TASK_sgd_constant_b128", a), ("finder-valley_b.task.TASK_sgd_constant_b128", b),
        ("manual_lr=0.1_a.task.TASK_sgd_constant_b128", a), ("manual_lr=0.1_b.task.TASK_sgd_constant_b128", b)], sorted(trials)
    assert all(len(rows) == 2 for rows in trials.values()), {k: len(v) for k, v in trials.items()}  # --smoke's epochs
    assert len({row["node_id"] for rows in trials.values() for row in rows}) == 1  # the worker: the head has no CPU
    work = {rows[-1]["task"]: rows[-1]["flops_per_train_step"] for rows in trials.values()}
    assert work[a] != work[b], work  # each trains its own model (b's: its sibling's, a quarter of a's width)
    summary = json.loads((tmp_path / "results" / "shipped" / "summary.json").read_text())
    assert list(summary["settings"]) == ["a.task.TASK/sgd", "b.task.TASK/sgd"]


# -- `ray up` with the local provider -------------------------------------------------------------

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port 22
HostKey {host_key}
PidFile none
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
AuthorizedKeysFile {home}/.ssh/authorized_keys
SetEnv HOME={home}
"""


@pytest.fixture
def ssh_machine(tmp_path):
    """A fresh "machine" for `ray up`: sshd on 127.0.0.1:22 in new PID, mount and network namespaces.

    There, root's HOME is a scratch folder (with the test's authorized key) and /tmp/ray is one too;
    the network is its own loopback, so Ray's default ports are free. The launcher reaches it through
    an ssh ProxyCommand that enters the namespace. Killing `unshare` kills everything inside.
    """
    require("unshare", "nsenter", "ip", "sshd", "ssh", "ssh-keygen", "rsync", root=True)
    home, raytmp = tmp_path / "home", Path(tempfile.mkdtemp(prefix="ru", dir="/tmp"))
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key, host_key = tmp_path / "id_ed25519", tmp_path / "host_ed25519"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    (home / ".ssh" / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    # What cluster.yaml's `uv venv` makes: here the environment running the tests stands in for it.
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "activate").write_text(f'export PATH="{sys.prefix}/bin:$PATH" PYTHONPATH="$HOME/site"\n')
    (home / ".bashrc").touch()  # Ray's commands source it, as on any Ubuntu image
    config = tmp_path / "sshd_config"
    config.write_text(SSHD_CONFIG.format(host_key=host_key, home=home))
    sshd = shutil.which("sshd")
    boot = (f"ip link set lo up && mkdir -p /run/sshd /tmp/ray && mount --bind {raytmp} /tmp/ray && "
            f"exec {sshd} -D -e -f {config}")
    log = open(tmp_path / "sshd.log", "w")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--net", "sh", "-c", boot],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    netns = f"/proc/{proc.pid}/ns/net"
    relay = f"nsenter --net={netns} bash -c 'exec 3<>/dev/tcp/127.0.0.1/22; cat <&3 & exec cat >&3'"
    try:
        deadline = time.time() + 20
        while not port_open(netns, 22):
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "sshd.log").read_text()
            time.sleep(0.2)
        yield {"home": home, "key": key, "proxy_command": relay, "netns": netns}
    finally:
        proc.kill()
        proc.wait()
        log.close()
        shutil.rmtree(raytmp, ignore_errors=True)


def port_open(netns: str, port: int) -> bool:
    return run(["nsenter", f"--net={netns}", "bash", "-c", f"echo > /dev/tcp/127.0.0.1/{port}"]).returncode == 0


def local_provider_config(machine: dict, token: Path, name: str) -> dict:
    """cluster.yaml for Ray's local provider: the same file mounts, token set-up and start command."""
    ours = load_cluster_yaml()
    mounts = {remote: str(REPO) if local == "." else local for remote, local in ours["file_mounts"].items()}
    mounts["~/.ray/auth_token"] = str(token)
    # cluster.yaml installs Python and the pinned packages from the internet; here the tests'
    # environment stands in for them, and only this project is built and installed, offline.
    install = f"{sys.executable} -m pip install -q --no-deps --no-build-isolation --no-index --target ~/site ~/lrstudy"
    return {
        "cluster_name": name,
        "provider": {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []},
        "auth": {"ssh_user": "root", "ssh_private_key": str(machine["key"]),
                 "ssh_proxy_command": machine["proxy_command"]},
        "file_mounts": mounts,
        "rsync_exclude": ours["rsync_exclude"],
        "rsync_filter": ours["rsync_filter"],
        "setup_commands": [install] + [c for c in ours["setup_commands"] if "uv" not in c],
        "head_start_ray_commands": ours["head_start_ray_commands"],
        "worker_start_ray_commands": [],
    }


@pytest.mark.slow
def test_ray_up_runs_the_smoke_study_and_ray_down_stops_it(ssh_machine, tmp_path):
    data_dir = real_data_dir()
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump(local_provider_config(ssh_machine, token, f"lrstudy-test-{os.getpid()}")))
    launcher_tmp = tmp_path / "launcher"  # the local provider's state files, instead of /tmp/ray
    launcher_tmp.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(launcher_tmp)}

    def ray(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run([RAY, *args], env, timeout=timeout)

    up = ray("up", "-y", "--no-config-cache", "--disable-usage-stats", str(config))
    try:
        assert up.returncode == 0, tail(up)
        study = (f"cd ~/lrstudy && python -m study.run --smoke --address auto --results-dir ~/results --name c "
                 f"--data-dir {data_dir}")
        ran = ray("exec", str(config), study, timeout=900)
        assert ran.returncode == 0, tail(ran)
        # cluster.yaml's start command put the head in token mode: a client without the token is refused.
        refused = ray("exec", str(config), f"RAY_AUTH_MODE=disabled RAY_gcs_server_port_wait_time_s=3 "
                                           f"python -c \"{CONNECT}\" 127.0.0.1:6379")
        assert refused.returncode != 0 and "InvalidAuthToken" in refused.stdout + refused.stderr, tail(refused)
        down = ray("rsync-down", str(config), "~/results/c/", str(tmp_path / "c"))
        assert down.returncode == 0, tail(down)
    finally:
        stopped = ray("down", "-y", str(config))
    assert stopped.returncode == 0, tail(stopped)
    assert not port_open(ssh_machine["netns"], 6379), "the head's GCS still listens after `ray down`"
    for experiment in (ssh_machine["home"] / "results" / "c", tmp_path / "c"):
        trials = trial_rows(experiment)
        assert len(trials) == SMOKE_TRIALS and all(trials.values()), (experiment, sorted(trials))
    assert (ssh_machine["home"] / ".ray" / "auth_token").read_text() == token.read_text()
