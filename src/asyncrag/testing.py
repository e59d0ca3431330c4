"""Test support: a real Milvus server without Docker (the PyPI `milvus` package, Milvus 2.3.5
standalone), and `HashEmbedder`, instant vectors for tests of plumbing.

`MilvusServer` starts one in a fresh temporary data directory, waits until it answers,
and on stop kills its whole process group and deletes the data directory.

It lives in the package, like `fastapi.testclient`, because it is test support that users
need too: an application built on asyncrag can run its integration tests against a real
Milvus server (`pip install 'asyncrag[bench]'`, no Docker), and asyncrag's own tests/ and
benchmarks/ import it from here. Nothing else in the package imports it.

Why not the package's own `milvus.MilvusServer`: it unpacks ~200 MB of binaries into every
data directory (~6 s each time), it cannot kill a process group, and its graceful stop takes
37-72 s. Here the binaries are unpacked once into a cache directory, each server gets a fresh
data directory (a restart on a stale one can panic on old etcd sessions), and the server is
stopped with SIGKILL: nothing in a throw-away data directory needs a clean shutdown.

Ports: every port is picked free at start (from Milvus's defaults up), including the embedded
etcd's, which Milvus 2.3.5 only lets one set through an etcd config file (`etcd.config.path`,
written here); so several servers can run side by side (parallel test sessions).

Loopback: every component advertises 127.0.0.1, clients connect to 127.0.0.1 and etcd listens
on 127.0.0.1 only. Milvus 2.3.5 has no listen-address setting for its own gRPC servers, so
those ports are bound on all interfaces while it runs.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from platformdirs import user_cache_path

COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
ETCD_PEER_PORT = 2380  # the first free port from here is used
METRICS_PORT = 9091  # /healthz; the first free port from here is used


class HashEmbedder:
    """Deterministic vectors from a hash of each text: for tests of plumbing, not of retrieval.

    It satisfies the Embedder protocol and embeds instantly, so a test can ingest hundreds of
    files (or Hypothesis examples) against a real Milvus in seconds. It lives here, not in
    tests/, because Ray's workers (ingest/on_ray.py) import it by name. For those tests it can
    also be slow (`delay` seconds a call), note each text it embeds in `log` (one line each,
    from any process), and kill its own process on its first call where the file `die_once`
    does not exist yet (creating it): a worker lost mid-run.
    """

    name = identity = "test-hash-embedder"
    dim = 16
    max_tokens = 256
    tokenizer_file = None
    delay: float = 0.0
    log: Path | None = None
    die_once: Path | None = None

    def __init__(self, *, delay: float = 0.0, log: Path | None = None, die_once: Path | None = None) -> None:
        self.delay, self.log, self.die_once = delay, log, die_once

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self.die_once is not None:
            with contextlib.suppress(FileExistsError):
                self.die_once.touch(exist_ok=False)
                os.kill(os.getpid(), signal.SIGKILL)
        if self.delay:
            time.sleep(self.delay)
        if self.log is not None:
            with self.log.open("a") as f:  # one write per call: lines from several processes never mix
                f.write("".join(hashlib.sha256(t.encode()).hexdigest()[:16] + "\n" for t in texts))
        vectors = []
        for text in texts:
            raw = [b - 127.5 for b in hashlib.sha256(text.encode()).digest()[: self.dim]]
            norm = sum(x * x for x in raw) ** 0.5 or 1.0
            vectors.append([x / norm for x in raw])
        return vectors


class MilvusServerError(RuntimeError):
    """The server could not be started (package missing, port taken, crash at start-up)."""


def milvus_package_available() -> bool:
    """Whether the PyPI `milvus` package (the embedded server) is installed."""
    try:
        import milvus  # noqa: F401
    except ImportError:
        return False
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class MilvusServer:
    """Start/stop a Milvus 2.3.5 standalone on 127.0.0.1 in a fresh data directory.

    >>> with MilvusServer() as server:
    ...     MilvusClient(server.uri)

    `stop()` is idempotent and also registered with `atexit`, so an interrupted benchmark or
    test session does not leave a server behind.
    """

    def __init__(self, *, startup_timeout: float = 180.0, data_dir: str | Path | None = None) -> None:
        self.startup_timeout = startup_timeout
        self._requested_dir = Path(data_dir) if data_dir else None
        self.data_dir: Path | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: object | None = None

    @property
    def uri(self) -> str:
        if self.port is None:
            raise MilvusServerError("the server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, *, attempts: int = 3) -> MilvusServer:
        """Start the server and wait until it answers.

        Ports are checked free before Milvus binds them, so a server starting beside it at the
        same moment can take one first; then Milvus exits at start-up and it is tried again
        with fresh ports (up to `attempts` times).
        """
        if self._proc is not None:
            return self
        try:
            import milvus
        except ImportError:
            raise MilvusServerError("the `milvus` package is not installed (pip install 'asyncrag[bench]')") from None
        bin_dir = self._binaries(milvus)
        for attempt in range(1, attempts + 1):
            try:
                self._launch(milvus, bin_dir)
                self._wait_ready()
                return self
            except MilvusServerError:
                self.stop()
                if attempt == attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Kill the server's process group (SIGKILL: the data directory is thrown away) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        if self.data_dir is not None and self._requested_dir is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir = None
        atexit.unregister(self.stop)

    # -- internals -------------------------------------------------------------------------

    def _launch(self, milvus_module: object, bin_dir: Path) -> None:
        self.data_dir = self._requested_dir or Path(tempfile.mkdtemp(prefix="asyncrag-milvus-"))
        config = milvus_module.MilvusServerConfig(data_dir=str(self.data_dir))  # type: ignore[attr-defined]
        for component in COMPONENTS:
            config.set(f"{component}.ip", "127.0.0.1")
        config.resolve()  # picks free ports from the defaults up, writes configs/milvus.yaml
        self.port = int(config.get("proxy_port"))
        self.metrics_port = None
        self.metrics_port = self._free_port(config, METRICS_PORT)
        self._configure_etcd(config)
        env = dict(
            os.environ,
            DEPLOY_MODE="STANDALONE",
            METRICS_PORT=str(self.metrics_port),
            MILVUSCONF=str(self.data_dir / "configs"),
            MILVUS_RUN_DIR=str(self.data_dir / "run"),
            LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(bin_dir), os.environ.get("LD_LIBRARY_PATH")])),
        )
        self._log = open(self.data_dir / "logs" / "milvus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [str(bin_dir / "milvus"), "run", "standalone"],
            cwd=self.data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() kills all of it
        )
        atexit.register(self.stop)

    def _free_port(self, config: object, start: int) -> int:
        taken = {int(config.get(k)) for k in config.configurable_items if k.endswith("_port")}  # type: ignore[attr-defined]
        taken |= {p for p in (self.metrics_port,) if p}
        port = start
        while port in taken or not _port_free(port):
            port += 1
        return port

    def _configure_etcd(self, config: object) -> None:
        """Give the embedded etcd its own free ports on 127.0.0.1 through an etcd config file."""
        assert self.data_dir is not None
        client_port = int(config.get("etcd_port"))  # type: ignore[attr-defined]
        peer_port = self._free_port(config, ETCD_PEER_PORT)
        client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        etcd_yaml = self.data_dir / "configs" / "etcd.yaml"
        etcd_yaml.write_text(
            "name: default\n"
            f"listen-client-urls: {client}\n"
            f"advertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\n"
            f"initial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        milvus_yaml = self.data_dir / "configs" / "milvus.yaml"
        text = milvus_yaml.read_text()
        text = text.replace("\netcd:\n", f"\netcd:\n  config:\n    path: {etcd_yaml}\n", 1)
        text = text.replace(f"endpoints: localhost:{client_port}", f"endpoints: 127.0.0.1:{client_port}", 1)
        milvus_yaml.write_text(text)

    @staticmethod
    def _binaries(milvus_module: object) -> Path:
        """Unpack the package's binaries once (they are xz-compressed in the wheel), under a lock."""
        version = getattr(milvus_module, "__version__", "unknown")
        cache = user_cache_path("asyncrag") / f"milvus-server-{version}"
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            milvus_module._initialize_data_files(str(cache))  # type: ignore[attr-defined]  # skips unchanged files
        return cache / "bin"

    def _wait_ready(self) -> None:
        """Wait for /healthz, then for the proxy to answer a real request."""
        from pymilvus import MilvusClient

        deadline = time.monotonic() + self.startup_timeout
        health = f"http://127.0.0.1:{self.metrics_port}/healthz"
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise MilvusServerError(f"Milvus exited during start-up:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise MilvusServerError(f"Milvus did not start in {self.startup_timeout:.0f} s:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as resp:
                    if b"OK" in resp.read():
                        break
            except OSError:
                pass
            time.sleep(0.2)
        while True:
            try:
                client = MilvusClient(self.uri, timeout=10)
                client.list_collections()
                client.close()
                return
            except Exception:
                if time.monotonic() > deadline or not self.running:
                    raise
                time.sleep(0.5)

    def _log_tail(self, lines: int = 30) -> str:
        if self.data_dir is None:
            return ""
        try:
            text = (self.data_dir / "logs" / "milvus.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
