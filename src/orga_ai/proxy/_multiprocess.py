"""Many workers, one ``/metrics``: prometheus_client's multiprocess mode, with its directory managed here.

Each worker of ``orga-ai serve --workers N`` keeps its own registry in memory, so a scrape would see whichever worker
it reached. With ``PROMETHEUS_MULTIPROC_DIR`` set before ``prometheus_client`` is first imported, every worker writes
its values to memory-mapped files there instead, and ``/metrics`` in any worker sums them all
(:meth:`Metrics.render`). Counters and the latency histogram add up; of the gauges, requests in flight are summed
over the live workers and the breaker gauge takes the largest value (1 when any worker's breaker is open).

The directory: the operator's ``PROMETHEUS_MULTIPROC_DIR`` when set (left in place), else a fresh temporary one,
removed when the server exits. It must be set before the app is first built in the parent process: the workers inherit
it from there, and prometheus_client picks its value class at import.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile

__all__ = ["ENV", "prepare_shared_metrics"]

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
    path = tempfile.mkdtemp(prefix="orga-proxy-metrics-")
    os.environ[ENV] = path
    main_pid = os.getpid()

    def remove() -> None:
        if os.getpid() == main_pid:  # never from a worker that inherited this hook
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    logger.info("orga proxy: %d workers, metrics aggregated in %s (removed at exit)", workers, path)
    return path
