"""A bubblewrap sandbox for submitted code: one short-lived, unprivileged, offline process per job.

:func:`run_job` starts ``worker.py`` in a fresh sandbox built with bubblewrap (Debian package
``bubblewrap``) and returns what it printed, after the sandbox is gone. What the sandbox is:

- **its own namespaces**: PID (the submission sees only its own processes; when the sandbox's
  first process dies the kernel kills every process in it, so nothing survives the job: no
  detached process can outlive grading), network (no interface but a dead loopback: no network),
  IPC, UTS, and a mount namespace whose root is an empty tmpfs;
- **an unprivileged user**: when grading runs as root, the submission runs as its own uid
  (``61000 + n``, one per running sandbox on the machine, no groups, no capabilities, ``no_new_privs``); otherwise a user namespace maps
  it to uid 65534 without capabilities;
- **a read-only view of only what it needs**: ``/usr`` (system libraries, the Debian data sets),
  the Python installation (``sys.base_prefix``), the virtual environment (``sys.prefix``, at
  ``/opt/venv``), the course package ``course_lib`` (at ``/opt/course``; for a question that
  forbids it, a stub whose import fails), the data mirror named by ``COURSE_DATA_MIRROR`` (at
  ``/opt/data``) and the worker script; never the repository (nor its path), ``dist/``,
  the answer key, the masters or the report folder, which stay outside the mount namespace;
- **its own scratch**: a fresh tmpfs ``/tmp`` (``scratch_mb``), the working folder, destroyed
  with the sandbox;
- **limits** (``prlimit``): address space, CPU seconds, processes, file size, open files, no core
  files; the trusted side also kills the whole process group at the wall-clock ``timeout``.

The job goes in on stdin; stdout and stderr are captured to files outside the sandbox (at most
``FSIZE`` bytes each: a flood of output cannot fill the disk).

References
----------
- bubblewrap: https://github.com/containers/bubblewrap (``bwrap(1)``)
- prlimit(1), setpriv(1) from util-linux; namespaces(7), pid_namespaces(7)
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SandboxConfig", "JobResult", "run_job", "available", "usable", "describe"]

WORKER = Path(__file__).with_name("worker.py")
SANDBOX_VENV, SANDBOX_MIRROR = "/opt/venv", "/opt/data"   # where the environment and mirror appear
FSIZE = 64 * 2**20
UID_BASE, N_UIDS = 61000, 1000
USED_UIDS: set = set()          # uids this process gave to sandboxes (for tests: none may survive)


class _Slot:
    """A sandbox uid that no other job on this machine holds: ``UID_BASE + n``, locked with flock.

    Distinct uids keep the per-user process limit per sandbox, also across grading processes.
    """

    def __enter__(self) -> int:
        import fcntl
        import random

        folder = Path(tempfile.gettempdir()) / "course-grader-uids"
        folder.mkdir(mode=0o700, exist_ok=True)
        start = random.randrange(N_UIDS)
        for i in range(N_UIDS):
            n = (start + i) % N_UIDS
            f = open(folder / f"{n}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            self._file, self.n = f, n
            USED_UIDS.add(UID_BASE + n)
            return n
        raise RuntimeError(f"all {N_UIDS} sandbox uids are in use")

    def __exit__(self, *exc) -> None:
        self._file.close()                              # releases the lock


@dataclass
class SandboxConfig:
    """Limits of one sandboxed job.

    timeout : wall-clock seconds from start to kill (startup included)
    memory_mb : address-space limit (torch alone maps about 1 GB)
    nproc : processes and threads of the sandbox's user
    scratch_mb : size of the private ``/tmp``
    course_lib : mount the course package (False for questions that forbid it)
    hide : importable packages to replace by an empty one that raises ImportError (e.g. sklearn)
    """
    timeout: float = 60.0
    memory_mb: int = 4096
    nproc: int = 128
    scratch_mb: int = 256
    course_lib: bool = True
    hide: list = field(default_factory=list)


@dataclass
class JobResult:
    status: str                 # worker's status, or "timeout", "crashed", "malformed"
    result: dict | None         # the worker's decoded JSON line (untrusted data)
    returncode: int | None
    elapsed: float
    stderr_tail: str


def available() -> bool:
    """True if bubblewrap and util-linux's prlimit (and setpriv when root) are installed."""
    need = ["bwrap", "prlimit"] + (["setpriv"] if os.geteuid() == 0 else [])
    return all(shutil.which(n) for n in need)


_USABLE: tuple | None = None


def usable() -> tuple[bool, str]:
    """Whether a sandbox can start here (bubblewrap installed, namespaces allowed), and why not."""
    global _USABLE
    if _USABLE is None:
        if not available():
            _USABLE = (False, "bubblewrap or util-linux's prlimit/setpriv is not installed")
        else:
            res = run_job({"shared": [], "cells": [], "probe_source": "def probe():\n    return 1",
                           "probe": "probe", "args": []}, SandboxConfig(timeout=60))
            _USABLE = (True, "") if res.status == "ok" else \
                (False, f"bubblewrap cannot start here ({res.status}): {res.stderr_tail.strip()[-300:]}")
    return _USABLE


def _course_lib_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def _mkdirs(path: str, done: set, args: list) -> None:
    """bwrap --dir for every parent of ``path`` (mode 0755: bwrap's default is 0700 as root)."""
    parts = Path(path).parts
    for i in range(2, len(parts)):
        p = str(Path(*parts[:i]))
        if p not in done:
            done.add(p)
            args += ["--perms", "0755", "--dir", p]


def command(cfg: SandboxConfig, slot: int, hide_dirs: dict[str, str]) -> list[str]:
    """The bwrap + prlimit (+ setpriv) command line for one job (``hide_dirs``: target -> stub)."""
    hide_dirs = dict(hide_dirs)
    args = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv", "--as-pid-1",
            "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{name}"):
            args += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        elif os.path.isdir(f"/{name}"):
            args += ["--ro-bind", f"/{name}", f"/{name}"]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--proc", "/proc", "--dev", "/dev",
             "--size", str(cfg.scratch_mb * 2**20), "--perms", "1777", "--tmpfs", "/tmp",
             "--perms", "0777", "--dir", "/tmp/work", "--perms", "0777", "--dir", "/tmp/home"]
    done = {"/usr", "/tmp"}
    # The Python installation stays at its own path (its binaries know it). A virtual environment
    # and the data mirror are mounted at neutral paths, /opt/venv and /opt/data: both usually lie
    # inside or beside the course's checkout, and mounting them in place would make the
    # checkout's folder (with .venv as its only entry) visible to the submission.
    base = os.path.realpath(sys.base_prefix)
    if not (base == "/usr" or base.startswith("/usr/")):
        _mkdirs(base, done, args)
        args += ["--ro-bind", base, base]
    venv = os.path.realpath(sys.prefix)
    venv = venv if sys.prefix != sys.base_prefix and venv != base else None    # None: no venv
    if venv:
        _mkdirs(SANDBOX_VENV, done, args)
        args += ["--ro-bind", venv, SANDBOX_VENV]
    mirror = os.environ.get("COURSE_DATA_MIRROR")
    mirror = os.path.realpath(mirror) if mirror and os.path.isdir(mirror) else None
    if mirror:
        _mkdirs(SANDBOX_MIRROR, done, args)
        args += ["--ro-bind", mirror, SANDBOX_MIRROR]
    _mkdirs("/opt/course/x", done, args)
    _mkdirs("/opt/grader/x", done, args)
    if cfg.course_lib:
        args += ["--ro-bind", str(_course_lib_dir()), "/opt/course/course_lib"]
    else:                                              # a stub whose import fails (no pip install attempt)
        args += ["--ro-bind", hide_dirs.pop("course_lib"), "/opt/course/course_lib"]
    args += ["--ro-bind", str(WORKER), "/opt/grader/worker.py"]
    for target, stub in hide_dirs.items():
        if target.startswith("/opt/course/") and not cfg.course_lib:
            continue
        args += ["--ro-bind", stub, target]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/home", "TMPDIR": "/tmp",
           "PYTHONPATH": "/opt/course", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "COURSE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PIP_NO_INDEX": "1", "MPLBACKEND": "Agg", "COURSE_PROFILE": os.environ.get("COURSE_PROFILE", "ci")}
    if mirror:
        env["COURSE_DATA_MIRROR"] = SANDBOX_MIRROR
    for k, v in env.items():
        args += ["--setenv", k, v]
    args += ["--chdir", "/tmp/work"]
    if os.geteuid() != 0:
        args[1:1] = ["--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns"]
    limits = ["prlimit", f"--as={cfg.memory_mb * 2**20}", f"--cpu={int(cfg.timeout) + 1}",
              f"--nproc={cfg.nproc}", f"--fsize={FSIZE}", "--nofile=256", "--core=0", "--"]
    args += limits
    if os.geteuid() == 0:
        uid = str(UID_BASE + slot)
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    if venv:                                           # its pyvenv.cfg makes /opt/venv the prefix
        python = os.path.join(SANDBOX_VENV, "bin", "python")
    else:
        python = os.path.join(sys.prefix, "bin", "python")
        python = python if os.path.exists(python) else sys.executable
    args += [python, "-s",
             "/opt/grader/worker.py"]
    return args


def _hide_stubs(names: list[str], tmp: Path) -> dict[str, str]:
    """For each package to hide: its directory -> a stub package whose import raises."""
    import importlib.util

    out = {}
    for name in names:
        if name == "course_lib":                       # a stub package whose import fails
            stub = tmp / "hide-course_lib"
            stub.mkdir(exist_ok=True)
            (stub / "__init__.py").write_text("raise ImportError('course_lib is not available in this question')\n")
            os.chmod(stub, 0o755)
            os.chmod(stub / "__init__.py", 0o644)
            out["course_lib"] = str(stub)
            continue
        if name.startswith("course_lib."):             # one module of the course package
            rel = name.split(".", 1)[1].replace(".", "/")
            stub = tmp / f"hide-{name}.py"
            stub.write_text(f"raise ImportError('{name} is not available in this question')\n")
            os.chmod(stub, 0o644)
            target = f"/opt/course/course_lib/{rel}.py"
            if (_course_lib_dir() / f"{rel}.py").is_file():
                out[target] = str(stub)
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        stub = tmp / f"hide-{name}"
        stub.mkdir(exist_ok=True)
        (stub / "__init__.py").write_text(f"raise ImportError('{name} is not available in this question')\n")
        os.chmod(stub, 0o755)
        os.chmod(stub / "__init__.py", 0o644)
        out[os.path.realpath(list(spec.submodule_search_locations)[0])] = str(stub)
    return out


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)           # bwrap and everything in its session
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _uid_processes(uid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                pids.append(int(d))
                            break
            except (OSError, ValueError):
                pass
    return pids


def _reap(slot: int) -> None:
    """As root: wait until no process of the sandbox's uid is left (SIGKILL stragglers), 10 s at most."""
    if os.geteuid() != 0:
        return                                         # the PID namespace alone ends them
    deadline = time.monotonic() + 10
    while (pids := _uid_processes(UID_BASE + slot)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def run_job(job: dict, cfg: SandboxConfig) -> JobResult:
    """Run ``worker.py`` on ``job`` in a fresh sandbox; return after every process in it is gone."""
    from .worker import MAGIC

    with _Slot() as slot:
        try:
            return _run(job, cfg, slot)
        finally:
            _reap(slot)


def _run(job: dict, cfg: SandboxConfig, slot: int) -> JobResult:
    from .worker import MAGIC

    tmp = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        hide = _hide_stubs(list(cfg.hide) + ([] if cfg.course_lib else ["course_lib"]), tmp)
        os.chmod(tmp, 0o755)
        cmd = command(cfg, slot, hide)
        out_path, err_path = tmp / "stdout", tmp / "stderr"
        t0 = time.monotonic()
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out_f, stderr=err_f,
                                    start_new_session=True, close_fds=True)
            timed_out = False
            try:
                proc.communicate(json.dumps(job).encode(), timeout=cfg.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            except BrokenPipeError:
                pass
            finally:
                _kill(proc)                            # also when it exited: no survivor in its group
                proc.wait()
        elapsed = time.monotonic() - t0
        stderr_tail = err_path.read_bytes()[-4000:].decode(errors="replace")
        result = None
        with open(out_path, "rb") as f:                # the last result line wins; at most FSIZE bytes
            for line in f:
                if line.startswith(MAGIC.encode()):
                    result = line
        if timed_out:
            return JobResult("timeout", None, None, elapsed, stderr_tail)
        if result is None:
            return JobResult("crashed", None, proc.returncode, elapsed, stderr_tail)
        try:
            decoded = json.loads(result[len(MAGIC) + 1:].decode())
            if not isinstance(decoded, dict) or not isinstance(decoded.get("status"), str):
                raise ValueError("not a result object")
        except (ValueError, UnicodeDecodeError):
            return JobResult("malformed", None, proc.returncode, elapsed, stderr_tail)
        return JobResult(decoded["status"], decoded, proc.returncode, elapsed, stderr_tail)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe(cfg: SandboxConfig) -> str:
    """One line for reports: what the sandbox enforces."""
    user = "own uid, no capabilities" if os.geteuid() == 0 else "uid 65534 in a user namespace"
    return (f"bubblewrap: pid/net/ipc/uts namespaces, {user}, read-only /usr + Python + course_lib, "
            f"private /tmp {cfg.scratch_mb} MB; limits: {cfg.timeout:g} s wall, {int(cfg.timeout) + 1} s CPU, "
            f"{cfg.memory_mb} MB address space, {cfg.nproc} processes, {FSIZE >> 20} MB per file")
