"""Running chunks of work on a scheduler: a plain loop, Dask's threads or processes, or a distributed cluster.

Schedulers
    ``"serial"``     a plain loop in this process (no Dask), the reference path
    ``"threads"``    Dask's threaded scheduler in this process
    ``"processes"``  Dask's multiprocessing scheduler on a pool of spawned processes; the model
                     is pickled once and installed once per process by the pool's initializer
    a ``dask.distributed.Client`` (e.g. on a ``LocalCluster``) or a scheduler address string
                     (``"tcp://host:8786"``): the model is scattered to every worker once
                     (``client.scatter(model, broadcast=True)``); workers write into the store
                     themselves, so on a real cluster the store must be on a shared file system

Thread safety: the core's recording is thread-safe, but a model's own forward need not be (and
without a lock one image pipeline run gave a perturbation curve whose f(x) differed from the
explained prediction; not yet diagnosed). Inside one process every model call of the runners
therefore holds one lock (``MODEL_LOCK``); reading inputs and writing the store run in parallel,
and torch's own intra-op threads still use every core. Worker processes (``"processes"``, a
distributed cluster) run fully in parallel.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any

from ..errors import SciexplainError
from .jobs import _Job

LOCAL_SCHEDULERS = ("serial", "threads", "processes")

#: held around every model call in one process (see the module docstring)
MODEL_LOCK = threading.RLock()

_WORKER_MODELS: dict[str, Any] = {}


class SchedulerError(SciexplainError, ValueError):
    """The scheduler argument names no scheduler sciexplain knows how to use."""


def _install_model(token: str, payload: bytes) -> None:  # pool initializer in worker processes
    # payload is the caller's own in-memory model, pickled by this process a moment ago and
    # handed to the spawned workers it started (as multiprocessing and Dask do); it is never
    # read from a file or the network, so nothing untrusted is unpickled here
    _WORKER_MODELS[token] = pickle.loads(payload)


def _run_in_process(fn: Callable, model_ref: Any, job: _Job) -> Any:
    model = _WORKER_MODELS[model_ref] if isinstance(model_ref, str) else model_ref
    return fn(model, job)


def _distributed_client(scheduler: Any):
    """(client, close_after) for a Client or an address string; (None, False) otherwise."""
    if isinstance(scheduler, str) and scheduler not in LOCAL_SCHEDULERS and scheduler not in ("sync", "synchronous"):
        if "://" not in scheduler and ":" not in scheduler:
            raise SchedulerError(f"scheduler={scheduler!r}: use 'serial', 'threads', 'processes', a "
                                 "dask.distributed.Client, or a scheduler address such as 'tcp://host:8786'")
        from dask.distributed import Client
        try:
            return Client(scheduler, timeout="10s"), True
        except OSError as err:
            raise SchedulerError(f"no Dask scheduler answered at {scheduler!r} ({err}); start one with "
                                 "`dask scheduler` and `dask worker ADDRESS`, or use scheduler='threads'") from err
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "scatter"):
        return scheduler, False
    if not isinstance(scheduler, str):
        raise SchedulerError(f"scheduler must be a name, an address or a dask.distributed.Client, got "
                             f"{type(scheduler).__name__}")
    return None, False


def scheduler_name(scheduler: Any) -> str:
    """A readable name of ``scheduler`` for provenance (the address of a distributed scheduler)."""
    if isinstance(scheduler, str):
        return scheduler
    if hasattr(scheduler, "scheduler") and hasattr(scheduler, "scatter"):
        try:
            return f"distributed {scheduler.scheduler.address}"
        except AttributeError:
            return "distributed"
    return type(scheduler).__name__


def _run_jobs(fn: Callable, model: Any, jobs: list[_Job], scheduler: Any, *, n_workers: int | None,
              progress: bool, desc: str, on_result: Callable[[Any], None] | None = None) -> list[Any]:
    """Run ``fn(model, job)`` for every job on ``scheduler``; results in job order.

    The first failure stops the run: jobs not yet started are cancelled, finished ones keep
    what they wrote, and the error is raised.
    """
    from tqdm.auto import tqdm

    results: list[Any] = [None] * len(jobs)
    if not jobs:
        return results
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="chunk")

    def done(i: int, value: Any) -> None:
        results[i] = value
        if on_result is not None:
            on_result(value)
        bar.update(1)

    try:
        if scheduler in ("serial", "sync", "synchronous"):
            for i, job in enumerate(jobs):
                done(i, fn(model, job))
            return results
        client, close = _distributed_client(scheduler)
        if client is not None:
            try:
                return _run_distributed(client, fn, model, jobs, done, results)
            finally:
                if close:
                    client.close()
        if scheduler not in ("threads", "processes"):
            raise SchedulerError(f"unknown scheduler {scheduler!r}: use one of {LOCAL_SCHEDULERS}, a "
                                 "dask.distributed.Client or a scheduler address")
        return _run_local(fn, model, jobs, scheduler, n_workers, done, results)
    finally:
        bar.close()


def _run_local(fn, model, jobs, scheduler, n_workers, done, results):
    import dask
    from dask.callbacks import Callback

    keys = {}

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, id):
            i = keys.get(key)
            if i is not None:
                done(i, result)

    workers = n_workers or os.cpu_count() or 1
    if scheduler == "threads":
        model_ref = model  # one object in this process, shared by reference
        pool_cm = contextlib.nullcontext(None)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        model_ref = os.urandom(8).hex()  # names this run's model in the workers
        payload = pickle.dumps(model)
        pool_cm = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_install_model, initargs=(model_ref, payload))
    tasks = []
    for i, job in enumerate(jobs):
        task = dask.delayed(_run_in_process, pure=False)(fn, model_ref, job,
                                                         dask_key_name=f"sciexplain-chunk-{i}-{id(jobs)}")
        keys[task.key] = i
        tasks.append(task)
    with pool_cm as pool, _Progress():
        kwargs = {"num_workers": workers} if pool is None else {"pool": pool}
        dask.compute(*tasks, scheduler=scheduler, **kwargs)
    return results


def _run_distributed(client, fn, model, jobs, done, results):
    from dask.distributed import as_completed

    model_future = client.scatter(model, broadcast=True, hash=False)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = 2 * n_workers  # chunks in flight: bounds the memory of in-memory inputs sent to workers
    pending = iter(enumerate(jobs))
    index_of: dict[str, int] = {}
    inflight: dict[str, Any] = {}
    ac = as_completed()

    def submit_next() -> bool:
        try:
            i, job = next(pending)
        except StopIteration:
            return False
        fut = client.submit(_run_in_process, fn, model_future, job, pure=False)
        index_of[fut.key], inflight[fut.key] = i, fut
        ac.add(fut)
        return True

    for _ in range(limit):
        if not submit_next():
            break
    for fut in ac:
        inflight.pop(fut.key, None)
        if fut.status == "error":
            client.cancel(list(inflight.values()))  # stop cleanly: nothing new starts
            fut.result()  # raises the worker's exception (a SampleError naming the sample)
        done(index_of[fut.key], fut.result())
        submit_next()
    return results
