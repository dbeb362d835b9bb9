"""Launch a real ``tritonserver`` on a model repository: find it, start it, wait for ready, stop it.

The binary is the one on ``PATH`` (NVIDIA's Triton container) or else the one inside the
``nvidia-pytriton`` wheel. For the wheel's server this module also prepares what it needs: a
backend folder holding the Python backend plus the ``triton_python_backend_stub`` built for the
running Python (copied into a cache folder, the wheel is left untouched), ``LD_LIBRARY_PATH`` with
``nvidia_pytriton.libs``, and ``PYTHONPATH`` with this project and the running environment's
site-packages so that the Python-backend models can ``import banet``.

The server binds ``127.0.0.1`` unless told otherwise. :class:`TritonServer` is a context manager
for tests, the bench and the demo; ``banet-serve`` (:mod:`banet.cli.serve`) wraps it for users.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from banet.spec import DEFAULT_HOST, GRPC_PORT, HTTP_PORT, METRICS_PORT
from banet.triton_args import PYTHON_SHM_BYTES, gpu_visible, tritonserver_args

log = logging.getLogger(__name__)
triton_log = logging.getLogger("banet.server.tritonserver")

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"


class ServerError(RuntimeError):
    """The server could not be started or died; the message carries Triton's own reason."""


class PortInUseError(ServerError):
    """A port the server needs is already taken on that address."""


@dataclass(frozen=True)
class TritonInstallation:
    """A runnable ``tritonserver``: the binary, its backend folder (None: its built-in default) and env."""

    binary: Path
    backend_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


def _pytriton_root() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def find_tritonserver() -> Path:
    """Path of the ``tritonserver`` binary: ``$PATH`` first, else the one in ``nvidia-pytriton``."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path)
    root = _pytriton_root()
    if root is not None:
        binary = root / "tritonserver" / "bin" / "tritonserver"
        if binary.is_file():
            return binary
    raise FileNotFoundError("no tritonserver binary: not on PATH and nvidia-pytriton is not installed "
                            "(pip install '.[serve]', or use NVIDIA's Triton container)")


def _cache_dir() -> Path:
    base = os.environ.get("BANET_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "banet-deploy"
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"banet-deploy-{os.getuid()}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)


def pytriton_installation() -> TritonInstallation:
    """The wheel's server with a backend folder holding the Python backend stub for this Python."""
    root = _pytriton_root()
    if root is None:
        raise FileNotFoundError("nvidia-pytriton is not installed (pip install '.[serve]')")
    server = root / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"nvidia-pytriton has no Python backend stub for Python {version} ({stub})")
    backends = _cache_dir() / f"triton-backends-py{version}"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in (server / "backends" / "python").iterdir():
        if src.is_file():
            _copy_if_changed(src, python_dir / src.name)
    _copy_if_changed(stub, python_dir / stub.name)
    libs = [str(root.parent / "nvidia_pytriton.libs")]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        # the stub links libpython3.X: use the running interpreter's (same ABI as the venv's packages)
        # rather than whatever system copy the dynamic loader would find first
        libs.insert(0, str(sysconfig.get_config_var("LIBDIR")))
    env = {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (*libs, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
    return TritonInstallation(binary=server / "bin" / "tritonserver", backend_dir=backends, env=env)


def installation() -> TritonInstallation:
    """The server to run: ``tritonserver`` on PATH as it is, else the nvidia-pytriton one prepared."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstallation(binary=Path(on_path))
    return pytriton_installation()


def python_path() -> str:
    """PYTHONPATH for the Python-backend stubs: this project, the environment's site-packages, the caller's.

    The stub embeds an isolated interpreter that does not read PYTHONPATH itself; the ``model.py``
    adapters in ``triton_repo/`` put its entries on ``sys.path`` before importing anything else.
    """
    project = Path(__file__).resolve().parents[1]
    parts = [str(project), *site.getsitepackages()]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(dict.fromkeys(parts))


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port that is free on ``host`` right now (for tests; another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def exit_words(code: int | None) -> str:
    """``exited with status 1`` or, when Triton died of a signal, ``was killed by SIGSEGV (status -11)``.

    The Triton in nvidia-pytriton once segfaulted while shutting down after a model failed to load (CI, 2026-12-03);
    the reasons in its log are the same either way, so the caller shows them whatever the status.
    """
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name} (status {code})"
        except ValueError:
            pass
    return f"exited with status {code}"


class TritonServer:
    """A ``tritonserver`` process on ``repository``; use as ``with TritonServer(repo) as server: ...``.

    ``start()`` refuses taken ports up front, launches the server with ``--exit-on-error`` and
    ``--strict-readiness``, forwards every server log line to the ``banet.server.tritonserver``
    logger and returns once ``/v2/health/ready`` says ready. If the server exits first (a model
    failed to load, a port was taken) :class:`ServerError` carries Triton's own reason lines.
    """

    def __init__(self, repository: str | Path, *, host: str = DEFAULT_HOST, grpc_port: int = GRPC_PORT,
                 http_port: int = HTTP_PORT, metrics_port: int | None = METRICS_PORT,
                 extra_args: tuple[str, ...] = (), startup_timeout_s: float = 180.0, log_verbose: int = 0,
                 env: dict[str, str] | None = None, gpu: bool | None = None) -> None:
        self.repository = Path(repository).resolve()
        self.host = host
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.extra_args = tuple(extra_args)
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self.extra_env = dict(env or {})
        self.gpu = gpu_visible() if gpu is None else gpu
        """The server sees a GPU: Triton's GPU metrics stay on (:func:`banet.triton_args.tritonserver_args`)."""
        self.process: subprocess.Popen | None = None
        self.log_tail: collections.deque[str] = collections.deque(maxlen=400)
        self._reader: threading.Thread | None = None

    # --- endpoints -------------------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str | None:
        return None if self.metrics_port is None else f"http://{self._client_host}:{self.metrics_port}/metrics"

    def command(self, inst: TritonInstallation) -> list[str]:
        """``tritonserver`` and its flags: :func:`banet.triton_args.tritonserver_args` (the one source the
        container image and the Kubernetes manifest use too), then ``extra_args``."""
        # the Python backend's shared-memory flags unless the caller gives their own
        own_shm = any("shm-default-byte-size" in a or "shm-growth-byte-size" in a for a in self.extra_args)
        flags = tritonserver_args(model_repository=self.repository, gpu=self.gpu, host=self.host,
                                  grpc_port=self.grpc_port, http_port=self.http_port, metrics_port=self.metrics_port,
                                  backend_dir=inst.backend_dir, log_verbose=self.log_verbose,
                                  python_shm_bytes=None if own_shm else PYTHON_SHM_BYTES)
        return [str(inst.binary), *flags, *self.extra_args]

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> TritonServer:
        if self.process is not None and self.process.poll() is None:
            raise ServerError("server already running")
        if not (self.repository / "").is_dir():
            raise ServerError(f"model repository not found: {self.repository}")
        ports = {"gRPC": self.grpc_port, "HTTP": self.http_port}
        if self.metrics_port is not None:
            ports["metrics"] = self.metrics_port
        for name, port in ports.items():
            if not port_free(self.host, port):
                raise PortInUseError(f"{name} port {port} on {self.host} is already in use "
                                     f"(another tritonserver?); choose another with --{name.lower()}-port")
        inst = installation()
        env = {**os.environ, **inst.env, "PYTHONPATH": python_path(), **self.extra_env}
        cmd = self.command(inst)
        log.info("starting %s", " ".join(cmd))
        self.log_tail.clear()
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = threading.Thread(target=self._forward_logs, name="tritonserver-log", daemon=True)
        self._reader.start()
        try:
            self.wait_ready(self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _forward_logs(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log_tail.append(line)
            level = logging.WARNING if line[:1] in ("E", "W") and line[1:2].isdigit() else logging.INFO
            triton_log.log(level, "%s", line)

    def reasons(self) -> list[str]:
        """Triton's error lines seen so far (model load failures, bind errors)."""
        return [line for line in self.log_tail if line[:1] == "E" and line[1:2].isdigit()
                or ("UNAVAILABLE" in line and "|" in line) or "failed to load" in line]

    def _http_ok(self, path: str, timeout: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def is_ready(self) -> bool:
        return self._http_ok(READY_PATH)

    def is_live(self) -> bool:
        return self._http_ok(LIVE_PATH)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                if self._reader is not None:
                    self._reader.join(timeout=5)
                reasons = self.reasons() or list(self.log_tail)[-15:]
                raise ServerError(f"tritonserver {exit_words(code)} before it was ready "
                                  f"(repository {self.repository}):\n" + "\n".join(reasons))
            if self.is_ready():
                log.info("tritonserver ready: gRPC %s, HTTP %s", self.grpc_url, self.http_url)
                return
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {timeout_s:.0f} s:\n" + "\n".join(list(self.log_tail)[-15:]))

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after ``timeout_s``; returns the exit status."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop within %.0f s; killing it", timeout_s)
                proc.kill()
                proc.wait()
        # Python-backend stubs of models still loading when SIGTERM came can outlive the server; they
        # are in its process group (start_new_session), which nothing else uses
        _kill_group(proc.pid)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and its Python-backend stubs at once (a crash, for fault tests)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.stop()

    def rss_bytes(self) -> int | None:
        """Resident memory of the server and its children (the Python backend stubs), from /proc."""
        if self.process is None or self.process.poll() is not None:
            return None
        return _tree_rss(self.process.pid)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of the process group ``pgid`` (nothing when it is gone already)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tree_rss(pid: int) -> int:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total
