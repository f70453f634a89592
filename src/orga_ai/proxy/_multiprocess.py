"""Many workers, one ``/metrics``: prometheus_client's multiprocess mode, with its directory managed here.

Each worker of ``orga-ai serve --workers N`` keeps its own registry in memory, so a scrape would see whichever worker
it reached. With ``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` is first imported, every worker writes
its values to memory-mapped files there instead, and ``/metrics`` in any worker sums them all
(:meth:`Metrics.render`). Counters and the latency histogram add up; of the gauges, requests in flight are summed
over the live workers and the breaker gauge takes the largest value (1 when any worker's breaker is open).

The directory: the operator's ``PROMETHEUS_MULTIPROC_DIR`` when set (left in place), else a fresh temporary one,
removed when the server exits. It must be set before the app is first built in the parent process: the workers inherit
it from there, and prometheus_client picks its value class at import. Whether ``/metrics`` reads the directory is
decided from the variable alone (:class:`~orga_ai.proxy._metrics.Metrics`), so it must not be set after
prometheus_client was imported: that process's values would then be in memory only, and its scrapes would miss them.

A process that exits normally (a worker stopped by SIGTERM, SIGHUP's restart or SIGTTOU, the parent) calls
``prometheus_client.multiprocess.mark_process_dead`` for itself on the way out: its "live" gauges (requests in flight,
breaker open) leave the sums, its counters stay. **Gap:** a worker that dies abruptly (killed, crashed, or killed by
uvicorn's supervisor for failing its health check) runs no exit hook, and uvicorn's ``Multiprocess`` supervisor,
which restarts it, offers no public hook on a worker's exit (as gunicorn's ``child_exit`` does) to call it from the
parent. Its last in-flight count and breaker state then stay in the live sums until the directory is cleared (the
managed one is removed at exit; clear your own ``PROMETHEUS_MULTIPROC_DIR`` between runs, as prometheus_client's
documentation asks).
"""

from __future__ import annotations

import atexit
import logging
import os

__all__ = ["ENV", "forget_live_gauges_at_exit", "prepare_shared_metrics"]

ENV = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger("orga_ai.proxy")


def prepare_shared_metrics(workers: int) -> str | None:
    """Point prometheus_client at a shared directory when ``workers > 1``; returns it (None for one worker)."""
    if workers <= 1:
        return None
    given = os.environ.get(ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        logger.info("orga proxy: %d workers, metrics aggregated in %s (yours, kept)", workers, given)
        return given
    # shutil and tempfile only here, for serve --workers: the function entry points import this module's caller
    # (_metrics) on their cold start and need neither.
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="orga-proxy-metrics-")
    os.environ[ENV] = path
    main_pid = os.getpid()

    def remove() -> None:
        if os.getpid() == main_pid:  # never from a worker that inherited this hook
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    logger.info("orga proxy: %d workers, metrics aggregated in %s (removed at exit)", workers, path)
    return path


_marked: set[tuple[int, str]] = set()


def forget_live_gauges_at_exit(path: str) -> None:
    """At this process's normal exit, drop its live gauges from ``path`` (``mark_process_dead``); once per process."""
    key = (os.getpid(), path)
    if key in _marked:
        return
    _marked.add(key)
    pid = os.getpid()

    def forget() -> None:
        if os.getpid() != pid:  # a forked child inherited the hook: its own pid is not this one
            return
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]

    atexit.register(forget)
