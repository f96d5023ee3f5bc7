"""Where the cells of a grid run: in this process, in local processes (joblib), or on a Ray cluster.

Local, ``--jobs N``: N joblib (loky) processes, one cell each at a time. Each process gets
cores // N torch threads (``TrainConfig.threads``) and the OpenMP/BLAS pools of the workers are capped
to the same number (joblib's thread variables), so N jobs never run more threads than there are cores.
A worker that dies (killed for memory, a crash in native code) fails only its own cell: the cells that
were running beside it are run again one at a time to find the one that kills its worker, and the
cells not started yet go on in a fresh pool.
``--jobs 1`` trains in this process, with the epoch progress bar under the grid's bar.

Ray, ``--backend ray [--address ADDR]``: one Ray task per cell. On a cluster with GPUs each task asks
for one GPU (and the cluster's CPUs per GPU); without GPUs the cluster's CPUs are shared out among the
cells in flight. Without ``--address`` (and no ``RAY_ADDRESS``) a local Ray runtime is started, or the
one this process already started with ``ray.init`` is used.

Where the stacks must be: a Ray task reads the stacks and writes its run folder by path. The driver
makes every path absolute, so the stack folder (``--stacks-dir``, default data/stacks) and the grid
folder (``--grids-dir``, default grids) must be reachable at the same absolute path on every Ray node:
a local runtime always is; on a multi-machine cluster put them on a shared file system (NFS, a cluster
volume) mounted at the same path everywhere. Stacks are not shipped with the tasks (a grid's stacks are
often gigabytes). A worker that cannot read them fails its cell at once with a message that says so
(``grid.check_stacks_readable``). With ``--address``, the project's code (not data, runs or grids) is
shipped to the workers as Ray's ``working_dir``; the workers' Python must have requirements.txt.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.grid.run import (
    REPO,
    CellOutcome,
    CellTask,
    GridError,
    GridSpec,
    read_cell_record,
    threads_per_job,
    write_cell_record,
)

log = logging.getLogger(__name__)

# Not shipped to Ray workers with the code: data, results, environments, caches.
RAY_EXCLUDES = [".venv", ".env", ".git", "data", "runs", "grids", "models/default", "benchmarks/out", "**/__pycache__",
                ".pytest_cache", ".ruff_cache", "*.pt", "*.tiff", "*.mp4"]


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GridError("--backend ray needs Ray, an optional extra: pip install -r requirements-ray.txt") from None
    return ray


def run_tasks(fn: Callable[[CellTask], CellOutcome], tasks: list[CellTask], spec: GridSpec,
              progress: bool = True) -> dict[str, CellOutcome]:
    """Run every task; returns each cell's outcome. A failing cell never stops the others."""
    outcomes: dict[str, CellOutcome] = {}
    by_cell = {t.cell: t for t in tasks}
    bar = tqdm(total=len(tasks), desc=f"grid {spec.name}", unit="cell", disable=not progress, dynamic_ncols=True)

    def done(outcome: CellOutcome) -> None:
        outcomes[outcome.cell] = outcome
        if outcome.status != "done":
            log.info(f"[{outcome.cell}] {outcome.status}: {outcome.error}")
            _record_failure(by_cell[outcome.cell], outcome)
        bar.update(1)
        bar.set_postfix_str(f"last: {outcome.cell} {outcome.status}")

    try:
        if spec.backend == "ray":
            _run_ray(fn, tasks, spec, done)
        else:
            _run_local(fn, tasks, spec.jobs or 1, done)
    except Exception as exc:  # a backend that broke down (a killed worker, a lost cluster)
        if isinstance(exc, GridError):
            raise
        message = f"the {spec.backend} backend failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
        for task in tasks:
            if task.cell not in outcomes:
                done(CellOutcome(task.cell, "failed", message))
    finally:
        bar.close()
    return outcomes


def in_worker(fn: Callable[[CellTask], CellOutcome], task: CellTask) -> CellOutcome:
    """A cell in a worker process (joblib's or Ray's): its progress lines go to the terminal as in `cli.py`."""
    from pipeline.console import setup_logging

    setup_logging()
    return fn(task)


def _record_failure(task: CellTask, outcome: CellOutcome) -> None:
    """A cell whose worker died before it could write its own record gets one from here (a finished
    cell's record is never replaced; what the worker recorded, e.g. its stacks, is kept)."""
    run_dir = task.config.run_dir
    try:
        record = read_cell_record(run_dir)
    except GridError:  # the worker died while the record was unreadable: this outcome replaces it
        record = {}
    if record.get("status") in (outcome.status, "done"):
        return
    try:
        write_cell_record(run_dir, {**record, "cell": task.cell, "status": outcome.status, "error": outcome.error,
                                    "host": outcome.host or record.get("host", "")})
    except OSError:
        pass


# -- local: this process, or joblib processes ---------------------------------------------------------


def _run_local(fn: Callable[[CellTask], CellOutcome], tasks: list[CellTask], jobs: int,
               done: Callable[[CellOutcome], None]) -> None:
    jobs = min(jobs, len(tasks))
    if jobs <= 1:
        for task in tasks:
            outcome = fn(task)
            done(outcome)
            if outcome.status == "interrupted":
                return
        return
    threads = threads_per_job(jobs)
    tasks = [dataclasses.replace(t, threads=t.threads or t.config.threads or threads) for t in tasks]
    env = _worker_env(threads)
    queue = deque(tasks)
    pools: list[Any] = []
    try:
        while queue:
            crashed, error = _pool_round(fn, queue, jobs, env, done, pools)
            if len(crashed) == 1:
                done(CellOutcome(crashed[0].cell, "failed", f"its worker process died: {error}"))
                continue
            for task in crashed:  # several were running when one worker died: each again, alone
                again, error = _pool_round(fn, deque([_retry(task)]), 1, env, done, pools)
                if again:
                    done(CellOutcome(task.cell, "failed", f"its worker process died: {error}"))
    finally:
        if pools:  # loky's reusable pool would otherwise idle on after the grid
            pools[-1].shutdown(wait=True)


def _worker_env(threads: int) -> dict[str, str]:
    """What joblib's ``inner_max_num_threads`` sets in its workers: OpenMP/BLAS pools of ``threads``."""
    from joblib.parallel import ParallelBackendBase

    env = {var: str(threads) for var in ParallelBackendBase.MAX_NUM_THREADS_VARS}
    if ParallelBackendBase.TBB_ENABLE_IPC_VAR not in os.environ:
        env[ParallelBackendBase.TBB_ENABLE_IPC_VAR] = "1"
    return env


def _retry(task: CellTask) -> CellTask:
    """A cell whose worker was killed under it goes on from its last.pt, where it got that far."""
    if task.mode == "fresh" and (task.config.run_dir / "last.pt").is_file():
        return dataclasses.replace(task, mode="resume")
    return task


def _pool_round(fn: Callable[[CellTask], CellOutcome], queue: deque[CellTask], workers: int,
                env: dict[str, str], done: Callable[[CellOutcome], None],
                pools: list[Any]) -> tuple[list[CellTask], str]:
    """Run the queue's cells on a loky pool, at most ``workers`` at a time, until it is empty or a worker
    dies; then returns the cells that were running (the rest stay in the queue) and the error."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import BrokenProcessPool

    executor = get_reusable_executor(max_workers=workers, env=env, reuse=True)
    pools.append(executor)
    running: dict[Any, CellTask] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                task = queue.popleft()
                running[executor.submit(in_worker, fn, task)] = task
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            broken: list[CellTask] = []
            error = ""
            for future in finished:
                task = running.pop(future)
                try:
                    done(future.result())
                except BrokenProcessPool as exc:
                    broken.append(task)
                    error = _error_line(exc)
                except Exception as exc:  # e.g. the task could not be sent to the worker
                    done(CellOutcome(task.cell, "failed", _error_line(exc)))
            if broken:
                # the pool is gone: every cell still running ends with it (or has just finished)
                finished, _ = wait(list(running), timeout=60)
                for future in finished:
                    task = running.pop(future)
                    if future.exception() is None:
                        done(future.result())
                    else:
                        broken.append(task)
                executor.shutdown(wait=False, kill_workers=True)
                return broken + list(running.values()), error
    except BaseException:  # Ctrl-C: the workers go too
        executor.shutdown(wait=False, kill_workers=True)
        raise
    return [], ""


# -- Ray ----------------------------------------------------------------------------------------------


def _remote_address(spec: GridSpec) -> str | None:
    return spec.address or os.environ.get("RAY_ADDRESS") or None


def _runtime_env(address: str | None) -> dict | None:
    """A local runtime's workers import the project from this process's sys.path; a cluster's get the code."""
    if address is None:
        return None
    return {"working_dir": str(REPO), "excludes": RAY_EXCLUDES}


def cell_resources(ray: Any, tasks: list[CellTask], in_flight: int) -> tuple[int, int]:
    """(CPUs, GPUs) one cell asks for: a GPU each where the cluster has them, else a share of the CPUs."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    gpu_nodes = [r for r in nodes if r.get("GPU", 0) >= 1]
    if gpu_nodes:
        return max(1, min(int(r.get("CPU", 1) // r["GPU"]) for r in gpu_nodes)), 1
    node_cpus = max((int(r.get("CPU", 1)) for r in nodes), default=1)
    total = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(node_cpus, total // max(1, in_flight))), 0


def _error_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _ray_error(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:300] if lines else ''}"


def _run_ray(fn: Callable[[CellTask], CellOutcome], tasks: list[CellTask], spec: GridSpec,
             done: Callable[[CellOutcome], None]) -> None:
    ray = require_ray()
    address = _remote_address(spec)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                     runtime_env=_runtime_env(address))
        except Exception as exc:
            raise GridError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                            f"{_ray_error(exc)}") from None
    try:
        limit = spec.jobs or len(tasks)
        cpus, gpus = cell_resources(ray, tasks, min(limit, len(tasks)))
        remote = ray.remote(in_worker).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        queue = iter(tasks)
        pending: dict[Any, CellTask] = {}

        def submit() -> None:
            while len(pending) < limit and (task := next(queue, None)) is not None:
                task = dataclasses.replace(task, threads=task.threads or task.config.threads or cpus)
                pending[remote.remote(fn, task)] = task

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # the task itself broke (worker died, code not importable there)
                    outcome = CellOutcome(task.cell, "failed", _ray_error(exc))
                done(outcome)
            submit()
    finally:
        if started_here:
            ray.shutdown()


def stacks_note(spec: GridSpec) -> str:
    """One line for the log: where the Ray workers must find the stacks."""
    return (f"ray: the workers read the stacks in {Path(spec.stacks_dir).resolve()} and write "
            f"{Path(spec.out).resolve()}: both must be at these paths on every node")
