"""Start, find and stop the local backend's two servers (detached processes).

    backend = LocalBackend(Path(".local"))
    ep = backend.ensure_running()    # Endpoints(batch_target="127.0.0.1:P", gcs_endpoint=...)
    client = local.client.batch_client(ep.batch_target)
    backend.stop()

Servers are recorded in `<root>/servers.json`; a later process reuses them while their pid is
alive, is still the same program, and their port answers.

One local cloud per stack: a root whose servers run one set of stacks refuses a command for
another (`OtherStackRunning`, one line saying how to stop it or where to run another), never
swapping the stack under the running cloud (a platform stack stands for its group: its
client shards are read with it); likewise a command that sets delivery knobs
(`local.faults`) other than the running Pub/Sub's (`OtherFaultsRunning`); one that sets none
uses the cloud as it runs. The same stack files changed by a new synth are
followed live (`local.topology`); only the IAM layer, which reads notifications at start, is
restarted (same port) when the stack's notification configurations changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.faults import ENV_NAMES as FAULT_ENV_NAMES
from local.faults import plan_from_env
from local.gcs import BINARY_NAME, gcs_ready, start_gcs
from local.iam_launcher import MODULE as IAM_MODULE
from local.iam_launcher import iam_ready, iam_wanted, stacks_from_env, start_iam_proxy
from local.procs import (
    PACKAGE_PARENT,
    cmdline_contains,
    exited_early,
    free_port,
    pid_alive,
    port_answers,
    spawn_module,
    terminate,
    write_json_atomic,
)
from local.pubsub_launcher import MODULE as PUBSUB_MODULE
from local.pubsub_launcher import start_pubsub
from tfjson import expand_groups, group_heads

BATCH_MODULE = "local.batch_server"


class CloudMismatch(RuntimeError):
    """This root's running local cloud is not the one asked for; it is left as it is."""


class OtherStackRunning(CloudMismatch):
    """This root's local cloud runs other stacks than the ones asked for."""

    def __init__(self, root: Path, running: Sequence[str], wanted: Sequence[Path]) -> None:
        super().__init__(
            f"the local cloud at {root} runs {', '.join(running)}, not "
            f"{', '.join(str(w) for w in wanted)}; stop it first (.venv/bin/python -m local "
            f"stop --root {root}) or run this stack in a cloud of its own (GPUB_LOCAL_ROOT=<dir>)")
        self.running = list(running)


class OtherFaultsRunning(CloudMismatch):
    """The caller sets delivery knobs other than those the running Pub/Sub delivers with."""

    def __init__(self, root: Path, running: Mapping[str, str], wanted: Mapping[str, str]) -> None:
        differ = ", ".join(f"{k}={wanted[k]} (running: {running.get(k, 'unset')})"
                           for k in sorted(wanted) if running.get(k) != wanted[k])
        super().__init__(
            f"the local cloud at {root} delivers with other knobs: {differ}; stop it first "
            f"(.venv/bin/python -m local stop --root {root}) or unset them to use it as it is")


def default_root() -> Path:
    """The one root rule for every command (bin/submit, bin/demo, python -m local):
    GPUB_LOCAL_ROOT when set, else <repo>/.local."""
    env = os.environ.get("GPUB_LOCAL_ROOT", "").strip()
    return Path(env).resolve() if env else PACKAGE_PARENT / ".local"


@dataclass(frozen=True)
class Endpoints:
    batch_target: str  # "127.0.0.1:PORT": BatchServiceClient over an insecure channel
    gcs_endpoint: str  # "http://127.0.0.1:PORT": STORAGE_EMULATOR_HOST (the IAM proxy if on)
    gcs_upstream: str = ""  # fake-gcs-server itself (== gcs_endpoint without stacks)
    pubsub_target: str = ""  # "127.0.0.1:PORT" for PUBSUB_EMULATOR_HOST ("" without stacks)


class LocalBackend:
    def __init__(
        self,
        root: Path | None = None,
        repo_root: Path | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        stacks: Sequence[Path] | None = None,
        iam: bool | None = None,
    ) -> None:
        """`root` holds state, GCS data and logs (default: `default_root()`); `repo_root` is
        where `images/<name>/local.json` are looked up (default: this checkout); `env` adds
        variables to the Batch server's environment when this call starts it (e.g.
        LOCAL_BATCH_PREEMPT_RATE). `stacks` are the synthesized cdk.tf.json files whose
        bucket IAM the local GCS enforces, each with its client shards (default:
        GPUB_LOCAL_STACKS); `iam` forces the IAM
        layer on or off (default: on when there are stacks, unless LOCAL_IAM=off)."""
        self.root = (root or default_root()).resolve()
        self.repo_root = (repo_root or PACKAGE_PARENT).resolve()
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        # A platform stack stands for its group (its client shards are read with it, live):
        # [platform] and [platform, its shards] are the same cloud.
        self.stacks = group_heads([Path(s).resolve() for s in (
            stacks if stacks is not None else stacks_from_env())])
        if stacks is None and not self.stacks:
            # Not told which stacks: keep what the running local cloud enforces, so a
            # `bin/submit status --local` after `bin/demo` does not restart it without IAM.
            running = self._read_servers().get("iam", {})
            self.stacks = [Path(s) for s in running.get("stacks", []) if Path(s).is_file()]
            if iam is None and self.stacks:
                iam = bool(running.get("iam", True))
        self.iam = iam_wanted(self.stacks) if iam is None else iam
        if self.iam and not self.stacks:
            raise ValueError("iam=True needs the stack files whose IAM it enforces (stacks=)")

    @property
    def servers_file(self) -> Path:
        return self.root / "servers.json"

    # ---- public API --------------------------------------------------------------------
    def ensure_running(self) -> Endpoints:
        """Reuse live servers, start the missing ones; safe to call from several processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            servers = self._read_servers()
            self._refuse_other_stacks(servers)
            pubsub = servers.get("pubsub", {})
            if not self.stacks:
                self._stop_entry(servers.pop("pubsub", {}), PUBSUB_MODULE)
                pubsub = {}
            elif not self._pubsub_alive(pubsub):
                self._stop_entry(pubsub, PUBSUB_MODULE)
                pubsub = servers["pubsub"] = start_pubsub(self.root, self.stacks,
                                                          ready_timeout=self.start_timeout)
                pubsub["faults"] = plan_from_env().env()
                write_json_atomic(self.servers_file, servers)
            iam = servers.get("iam", {})
            # Clients always reach GCS through the layer (local.iam_proxy): it keeps every
            # object name off host paths (local.gcs_names) and, with stacks, enforces IAM and
            # publishes notifications. fake-gcs-server must put the layer's address into upload
            # URLs and media links.
            iam_port: int | None = self._port_for(iam)
            external = f"http://127.0.0.1:{iam_port}" if iam_port else None
            gcs = servers.get("gcs", {})
            if not self._gcs_alive(gcs) or gcs.get("external", gcs.get("endpoint")) != (
                external or gcs.get("endpoint")
            ):
                self._stop_entry(gcs, BINARY_NAME)
                gcs = self._start_gcs(gcs.get("port"), external)
                servers["gcs"] = gcs
                write_json_atomic(self.servers_file, servers)
            if iam_port is None:
                self._stop_entry(servers.pop("iam", {}), IAM_MODULE)
                public = gcs["endpoint"]
            else:
                target = pubsub.get("target")
                # A new synth's notifications: the IAM layer reads them at start (same port).
                if not self._iam_alive(iam, gcs["endpoint"], target) or iam.get(
                        "notifications", "") != (self._notifications_key() if target else ""):
                    self._stop_entry(iam, IAM_MODULE)
                    iam = self._start_iam(iam_port, gcs["endpoint"], pubsub.get("target"))
                    servers["iam"] = iam
                    write_json_atomic(self.servers_file, servers)
                public = iam["endpoint"]
            batch = servers.get("batch", {})
            if not self._batch_alive(batch, public):
                # Also restarts a live server that points at an older GCS endpoint or repo.
                self._stop_entry(batch, BATCH_MODULE)
                batch = self._start_batch(public)
                servers["batch"] = batch
                write_json_atomic(self.servers_file, servers)
            return Endpoints(batch["target"], public, gcs["endpoint"], pubsub.get("target", ""))

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM both servers (the Batch server first, so tasks stop before storage does),
        SIGKILL after `timeout`. In-flight jobs end FAILED."""
        if not self.root.exists():
            return
        with self._locked():
            servers = self._read_servers()
            self._stop_entry(servers.pop("batch", {}), BATCH_MODULE, timeout)
            self._stop_entry(servers.pop("iam", {}), IAM_MODULE, timeout)
            self._stop_entry(servers.pop("pubsub", {}), PUBSUB_MODULE, timeout)
            self._stop_entry(servers.pop("gcs", {}), BINARY_NAME, timeout)
            write_json_atomic(self.servers_file, servers)

    def status(self) -> dict[str, Any]:
        """What servers.json says, plus whether each server is really up."""
        servers = self._read_servers()
        gcs, batch = servers.get("gcs", {}), servers.get("batch", {})
        iam = servers.get("iam", {})
        public = iam.get("endpoint") if iam else gcs.get("endpoint")
        out = {
            "root": str(self.root),
            "gcs": {**gcs, "running": self._gcs_alive(gcs)},
            "batch": {**batch, "running": self._batch_alive(batch, public)},
        }
        pubsub = servers.get("pubsub", {})
        if iam:
            running = self._iam_alive(iam, str(gcs.get("endpoint")), pubsub.get("target"))
            out["iam"] = {**iam, "running": running}
        if pubsub:
            out["pubsub"] = {**pubsub, "running": self._pubsub_alive(pubsub)}
        return out

    def task_log_paths(self, job_id: str) -> list[Path]:
        """Every attempt log of a job, ordered by task index then attempt."""
        tasks = self.root / "batch" / "jobs" / job_id / "tasks"
        logs = tasks.glob("*/attempt-*.log") if tasks.is_dir() else iter(())

        def key(p: Path) -> tuple[int, int]:
            return int(p.parent.name), int(p.stem.split("-", 1)[1])

        return sorted((p for p in logs if p.parent.name.isdigit()), key=key)

    # ---- internals ---------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two `bin/submit --local` at once must not start two sets of servers.
        with (self.root / "servers.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _refuse_other_stacks(self, servers: Mapping[str, Any]) -> None:
        """A live cloud of other stacks is never replaced (its events and grants would go)."""
        if not self.stacks:
            return
        wanted = [str(s) for s in self.stacks]
        for entry, module in ((servers.get("pubsub", {}), PUBSUB_MODULE),
                              (servers.get("iam", {}), IAM_MODULE)):
            running = entry.get("stacks") or []
            if running and running != wanted and self._alive(entry, module):
                raise OtherStackRunning(self.root, running, self.stacks)
        pubsub = servers.get("pubsub", {})
        knobs = plan_from_env().env()
        if (pubsub.get("faults") and any(k in os.environ for k in FAULT_ENV_NAMES)
                and pubsub["faults"] != knobs and self._alive(pubsub, PUBSUB_MODULE)):
            raise OtherFaultsRunning(self.root, pubsub["faults"], knobs)

    def _notifications_key(self) -> str:
        from local.gcs_events import notifications_key
        from local.pubsub_stack import declared_notifications

        docs = [json.loads(p.read_text(encoding="utf-8")) for p in expand_groups(self.stacks)
                if p.is_file()]
        return notifications_key(declared_notifications(docs))

    def _read_servers(self) -> dict[str, Any]:
        try:
            data = json.loads(self.servers_file.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _alive(entry: Mapping[str, Any], needle: str) -> bool:
        pid = int(entry.get("pid", 0) or 0)
        return pid_alive(pid) and cmdline_contains(pid, needle)

    def _gcs_alive(self, entry: Mapping[str, Any]) -> bool:
        return (
            bool(entry)
            and self._alive(entry, BINARY_NAME)
            and gcs_ready(str(entry.get("endpoint", "")))
        )

    def _batch_alive(self, entry: Mapping[str, Any], gcs_endpoint: str | None) -> bool:
        return (
            bool(entry)
            and self._alive(entry, BATCH_MODULE)
            and entry.get("gcs_endpoint") == gcs_endpoint
            and entry.get("repo_root") == str(self.repo_root)
            and entry.get("stacks", []) == [str(st) for st in self.stacks]
            and entry.get("iam", self.iam) == self.iam
            and port_answers(int(entry.get("port", 0)))
        )

    def _stop_entry(self, entry: Mapping[str, Any], needle: str, timeout: float = 15.0) -> None:
        if entry and self._alive(entry, needle):
            terminate(int(entry["pid"]), timeout)

    def _start_gcs(self, previous_port: int | None, external: str | None) -> dict[str, Any]:
        # Keep the old port when we can: URLs printed earlier stay valid.
        port = previous_port if previous_port and not port_answers(previous_port) else free_port()
        proc = start_gcs(self.root, port, ready_timeout=self.start_timeout, external_url=external)
        endpoint = f"http://127.0.0.1:{port}"
        return {"pid": proc.pid, "port": port, "endpoint": endpoint,
                "external": external or endpoint}

    def _port_for(self, entry: Mapping[str, Any]) -> int:
        """The proxy's port: the running proxy's, else its old one if free, else a new one."""
        port = int(entry.get("port", 0) or 0)
        if port and (self._alive(entry, IAM_MODULE) or not port_answers(port)):
            return port
        return free_port()

    def _iam_alive(self, entry: Mapping[str, Any], upstream: str, pubsub: str | None) -> bool:
        return (
            bool(entry)
            and self._alive(entry, IAM_MODULE)
            and entry.get("upstream") == upstream
            and entry.get("stacks") == [str(s) for s in self.stacks]
            and entry.get("iam") == self.iam
            and entry.get("pubsub") == pubsub
            and iam_ready(str(entry.get("endpoint", "")))
        )

    def _start_iam(self, port: int, upstream: str, pubsub: str | None) -> dict[str, Any]:
        proc = start_iam_proxy(self.root, port, upstream, self.stacks, self.start_timeout,
                               iam=self.iam, pubsub=pubsub)
        return {"pid": proc.pid, "port": port, "endpoint": f"http://127.0.0.1:{port}",
                "upstream": upstream, "stacks": [str(s) for s in self.stacks],
                "iam": self.iam, "pubsub": pubsub,
                "notifications": self._notifications_key() if pubsub else ""}

    def _pubsub_alive(self, entry: Mapping[str, Any]) -> bool:
        return (
            bool(entry)
            and self._alive(entry, PUBSUB_MODULE)
            and entry.get("stacks") == [str(s) for s in self.stacks]
            and port_answers(int(entry.get("port", 0)))
        )

    def _start_batch(self, gcs_endpoint: str) -> dict[str, Any]:
        batch_dir = self.root / "batch"
        batch_dir.mkdir(parents=True, exist_ok=True)
        port_file = batch_dir / "server-port.json"
        port_file.unlink(missing_ok=True)
        args = [
            "--root", str(self.root),
            "--repo-root", str(self.repo_root),
            "--gcs-endpoint", gcs_endpoint,
            "--port-file", str(port_file),
            *(a for st in self.stacks for a in ("--stack", str(st))),  # actAs at CreateJob
            *([] if self.iam else ["--no-iam"]),
        ]  # fmt: skip
        # Tasks get the right STORAGE_EMULATOR_HOST from the server, never the caller's.
        proc, log_path = spawn_module(BATCH_MODULE, args, self.root, "batch-server.log",
                                      extra_env=self.env, unset=("STORAGE_EMULATOR_HOST",))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if (error := exited_early(proc, log_path, "local Batch server")) is not None:
                raise error
            if port_file.is_file():
                info = json.loads(port_file.read_text(encoding="utf-8"))
                port = int(info["port"])
                return {
                    "pid": proc.pid,
                    "port": port,
                    "target": f"127.0.0.1:{port}",
                    "gcs_endpoint": gcs_endpoint,
                    "repo_root": str(self.repo_root),
                    "stacks": [str(st) for st in self.stacks],
                    "iam": self.iam,
                }
            time.sleep(0.05)
        terminate(proc.pid, 5)
        raise RuntimeError(
            f"local Batch server did not start within {self.start_timeout}s; see {log_path}"
        )
