"""Parallel work on dask.distributed: a local cluster sized to the machine, or an existing scheduler.

`executor()` yields a concurrent.futures.Executor (callers accept any); `run_variant` is the task a
variants run sends to a worker: one `python -m helpers run` in a child process, cancellable, its progress
sent back as events, and (for a remote cluster) its run folder shipped both ways as a tar archive.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO

PROGRESS_TOPIC = "workbook-progress"
CONNECT_TIMEOUT = 10.0  # seconds to wait for a scheduler address to answer


class DaskExecutor(Executor):
    """A concurrent.futures.Executor on a dask Client, plus what a variants run needs: the dashboard address,
    executors that request worker resources (a board), progress events and a cancel signal."""

    def __init__(self, client: Any, address: str, local: bool):
        self.client = client
        self.address = address
        self.local = local
        self._plain = client.get_executor(pure=False)
        self.cancel_event = f"workbook-cancel-{uuid.uuid4().hex[:12]}"
        self._handler: Callable[[dict[str, Any]], None] = self.print_progress
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: self._handler(event[1]))

    @staticmethod
    def print_progress(msg: dict[str, Any]) -> None:
        print(f"[{msg.get('variant')}] {msg.get('line')}", flush=True)

    @property
    def dashboard(self) -> str | None:
        """The dashboard's address (per-task progress in a browser), when the scheduler serves one."""
        with contextlib.suppress(Exception):
            return self.client.dashboard_link
        return None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._plain.submit(fn, *args, **kwargs)

    def requiring(self, resources: dict[str, float]) -> Executor:
        """An executor whose tasks run only on workers started with these resources (e.g. {"rk3588": 1})."""
        return self.client.get_executor(pure=False, resources=resources)

    def offered(self) -> dict[str, float]:
        """Resources the cluster's workers offer right now, summed ({"rk3588": 1.0, ...})."""
        total: dict[str, float] = {}
        for info in self.client.scheduler_info().get("workers", {}).values():
            for name, amount in (info.get("resources") or {}).items():
                total[name] = total.get(name, 0.0) + float(amount)
        return total

    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {}))

    def on_progress(self, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call handler(msg) for every progress event a task sends (see `report_progress`); until then
        each is printed as a line."""
        self._handler = handler

    def cancel_all(self) -> None:
        """Tell every task of this executor to stop: running ones stop their child run (and its kernels)
        and return; ones not started yet return at once when they start."""
        from distributed import Event  # slow: see executor()

        with contextlib.suppress(Exception):
            Event(self.cancel_event, client=self.client).set()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self.cancel_all()
        self._plain.shutdown(wait=wait and not cancel_futures)


def scheduler_address(scheduler: str | None) -> str | None:
    """The scheduler to use: the argument, else DASK_SCHEDULER_ADDRESS, else None (a local cluster)."""
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


@contextlib.contextmanager
def executor(scheduler: str | None = None, workers: int | None = None,
             timeout: float = CONNECT_TIMEOUT) -> Iterator[DaskExecutor]:
    """A concurrent.futures.Executor backed by dask.distributed.

    No address (and no DASK_SCHEDULER_ADDRESS): a local cluster on 127.0.0.1 with `workers` workers
    (default: one per core), each running one task at a time. An address: that cluster's workers.
    """
    import dask  # slow (~1 s) and only a variants run needs it: the runner imports this module for every run
    from distributed import Client, LocalCluster

    address = scheduler_address(scheduler)
    with dask.config.set({"distributed.dashboard.link": "http://{host}:{port}/status",
                          "distributed.worker.daemon": False}):
        if address is None:
            n = max(1, workers or os.cpu_count() or 1)
            # Threads, not processes: each task only supervises its own `python -m helpers run` child.
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                              dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
                with quiet_teardown():
                    yield DaskExecutor(client, cluster.scheduler_address, local=True)
            return
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise WorkbookError(
                f"The dask scheduler at {address} did not answer within {timeout:g} s ({type(exc).__name__}); "
                "start one there with `dask scheduler --host HOST` or fix --scheduler / DASK_SCHEDULER_ADDRESS."
            ) from None
        with client, quiet_teardown():
            yield DaskExecutor(client, address, local=False)


@contextlib.contextmanager
def quiet_teardown() -> Iterator[None]:
    """On Ctrl-C (or any error) inside the block, silence dask's own loggers before the cluster closes:
    the comms it is cutting on purpose would otherwise print tracebacks over the one-line message."""
    try:
        yield
    except BaseException:
        for name in ("distributed", "tornado", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise


# ----------------------------------------------------------------------------- the task a worker runs


@dataclass
class VariantResult:
    """What one variant's run did: ok, its failure block (stderr tail), wall seconds, and (remote) the folder."""

    variant: str
    ok: bool
    failure: str
    seconds: float
    archive: bytes | None = None
    worker: str = ""


def pack(folder: Path, skip: tuple[str, ...] = ()) -> bytes:
    """A gzip'd tar of a folder's contents (names relative to it), skipping top-level names in `skip`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        if folder.is_dir():
            for child in sorted(folder.iterdir()):
                if child.name not in skip:
                    tar.add(child, arcname=child.name)
    return buf.getvalue()


def unpack(archive: bytes, folder: Path) -> None:
    """Extract what `pack` made into folder (refusing names that leave it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")


def report_progress(msg: dict[str, Any]) -> None:
    """Send a progress event to the client (no-op outside a dask worker)."""
    with contextlib.suppress(Exception):
        from distributed import get_worker  # slow: see executor()

        get_worker().log_event(PROGRESS_TOPIC, msg)


def _cancelled(name: str | None) -> Callable[[], bool]:
    if not name:
        return lambda: False
    try:
        from distributed import Event, get_client  # slow: see executor()

        event = Event(name, client=get_client())
    except Exception:  # not inside a dask worker
        return lambda: False

    def check() -> bool:
        with contextlib.suppress(Exception):
            return event.is_set()
        return False

    return check


RUNNING: set[subprocess.Popen] = set()  # child runs started by tasks in this process


def stop_children() -> None:
    """Stop every child run still going in this process (a local cluster's last resort on Ctrl-C)."""
    for proc in list(RUNNING):
        if proc.poll() is None:
            stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the child's process group (the runner shuts its kernels down), SIGKILL after `grace`."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


def run_variant(variant: str, config: dict[str, Any], only: str | None, run_dir: str | None = None,
                archive: bytes | None = None, cancel: str | None = None, extra: tuple[str, ...] = ()) -> VariantResult:
    """Run one variant's series with `python -m helpers run` in a child process.

    run_dir set: run there (a file system the starting machine sees). archive set (a remote cluster):
    unpack it into a temporary folder on this worker, run there and return the folder as an archive.
    Progress lines become events; the cancel Event stops the child (and its kernels) cleanly.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"workbook-{variant}-") as tmp:
        folder = Path(run_dir) if run_dir else Path(tmp) / variant
        if archive is not None:
            unpack(archive, folder)
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-m", "helpers", "run", "--params", str(params), "--run-dir", str(folder),
               "--progress", "lines", *(["--only", only] if only else []), *extra]
        stderr_path = Path(tmp) / "stderr.txt"
        is_cancelled = _cancelled(cancel)
        if is_cancelled():
            return VariantResult(variant, False, f"variant {variant} was cancelled (Ctrl-C) before it started.", 0.0)
        with open(stderr_path, "w") as err:
            # Its own session: a Ctrl-C in the terminal reaches the variants run, which stops the runs in order.
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
            RUNNING.add(proc)
            try:
                lines: queue.Queue[str] = queue.Queue()
                reader = threading.Thread(target=_forward, args=(proc, lines), daemon=True)
                reader.start()
                cancelled = False
                while proc.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(1.0)
                    _send(lines, variant)  # from this (the task's) thread: where a worker may log events
                    if proc.returncode is None and is_cancelled():
                        cancelled = True
                        stop_process_group(proc)
                reader.join(5)
                _send(lines, variant)
            finally:
                RUNNING.discard(proc)
        failure = stderr_path.read_text(errors="replace")
        ok = proc.returncode == 0 and not cancelled
        if cancelled:
            failure = f"variant {variant} was cancelled (Ctrl-C) before it finished."
        elif not ok and not failure.strip():
            failure = f"`python -m helpers run` exited with code {proc.returncode} and printed nothing on stderr."
        packed = pack(folder) if archive is not None else None
    worker = ""
    with contextlib.suppress(Exception):
        from distributed import get_worker  # slow: see executor()

        worker = get_worker().address
    return VariantResult(variant, ok, failure if not ok else "", time.perf_counter() - started, packed, worker)


def _forward(proc: subprocess.Popen, lines: "queue.Queue[str]") -> None:
    """Queue the child's progress lines ("NN_name ran in 3.1 s")."""
    for line in proc.stdout or []:
        if line.startswith("progress: "):
            lines.put(line.rstrip().removeprefix("progress: "))


def _send(lines: "queue.Queue[str]", variant: str) -> None:
    """Send the queued progress lines to the client as events."""
    while not lines.empty():
        report_progress({"variant": variant, "line": lines.get_nowait()})
