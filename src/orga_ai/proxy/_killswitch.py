"""The deny-list and kill switch: stop all minting, or one principal, without a restart.

Two ways to flip it, both live:

* in code: ``app.state.orga_proxy.kill_switch.disable()`` / ``.deny("user-42")`` (an admin endpoint of yours, a
  signal handler, ...);
* a deny file (``--deny-file`` / ``ORGA_PROXY_DENY_FILE``), re-read when it changes. One entry per line: ``*`` stops
  all minting; any other line is a principal id, or a principal's fingerprint (``fp:...``) exactly as the access log
  shows it; ``#`` starts a comment. Mount one file on every replica (a Kubernetes ConfigMap, say) to flip them all.
  A file that disappears or cannot be read keeps the last good list (fail closed), logs an ERROR at every recheck
  and makes ``/readyz`` answer 503 until it is back. A file missing or unreadable when the switch is made is refused
  (``ValueError``): there is no last good list then, and a typo in the path would silently turn the list off.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal

from ._fingerprint import principal_fingerprint

__all__ = ["KillSwitch"]

logger = logging.getLogger("orga_ai.proxy")

Verdict = Literal["all", "principal"] | None


class KillSwitch:
    """The live deny-list. Thread-safe; checking it costs a dictionary lookup and, at most once per
    ``recheck_interval``, one ``stat()`` of the deny file.
    """

    def __init__(
        self,
        deny_file: str | os.PathLike[str] | None = None,
        *,
        recheck_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.deny_file = os.fspath(deny_file) if deny_file is not None else None
        self.recheck_interval = recheck_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._all_off = False
        self._denied: set[str] = set()
        self._file_all_off = False
        self._file_denied: frozenset[str] = frozenset()
        self._file_stamp: tuple[int, int, int, int] | None = None
        self._checked_at = -float("inf")
        self.problem: str | None = None
        """Why the deny file could not be (re)loaded, or None; ``/readyz`` reports it and answers 503."""
        self._reload(initial=True)

    # -- in code ---------------------------------------------------------------------------------------------------

    def disable(self) -> None:
        """Stop all minting (callers get 503 ``minting_disabled``) until :meth:`enable`."""
        with self._lock:
            self._all_off = True
        logger.warning("orga proxy: minting disabled by the kill switch")

    def enable(self) -> None:
        """Undo :meth:`disable` (a ``*`` in the deny file still applies)."""
        with self._lock:
            self._all_off = False
        logger.warning("orga proxy: minting re-enabled")

    def deny(self, principal_id: str) -> None:
        """Refuse one principal (403 ``principal_denied``) until :meth:`allow`."""
        with self._lock:
            self._denied.add(principal_id)

    def allow(self, principal_id: str) -> None:
        """Undo :meth:`deny`."""
        with self._lock:
            self._denied.discard(principal_id)

    # -- checking --------------------------------------------------------------------------------------------------

    def check(self, principal_id: str | None = None) -> Verdict:
        """``"all"`` when minting is off, ``"principal"`` when this principal is denied, else None."""
        self._maybe_reload()
        with self._lock:
            if self._all_off or self._file_all_off:
                return "all"
            if principal_id is None or not (self._denied or self._file_denied):
                return None  # nobody denied: no set union, no fingerprint (a SHA-256) on every request
            denied = self._denied | self._file_denied
        if principal_id in denied or principal_fingerprint(principal_id) in denied:
            return "principal"
        return None

    @property
    def minting_enabled(self) -> bool:
        """False when all minting is stopped."""
        return self.check() != "all"

    def _maybe_reload(self) -> None:
        if self.deny_file is None:
            return
        now = self._clock()
        if now - self._checked_at < self.recheck_interval:
            return
        self._checked_at = now
        self._reload()

    def _reload(self, *, initial: bool = False) -> None:
        # Fail closed: a deny file that disappears, cannot be read or is not UTF-8 text keeps the last good list (a
        # denied principal or a `*` must not be lifted by a broken deploy), logs an ERROR at every recheck until it
        # is fixed, and makes /readyz answer 503.
        if self.deny_file is None:
            return
        try:
            st = os.stat(self.deny_file)
            # The inode tells a file moved in place (a ConfigMap update) and ctime an in-place rewrite, even when
            # size and mtime (which anyone can set back) stay the same.
            stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            if stamp == self._file_stamp and self.problem is None:
                return
            entries: set[str] = set()
            with open(self.deny_file, encoding="utf-8") as handle:
                for line in handle:
                    entry = line.split("#", 1)[0].strip()
                    if entry:
                        entries.add(entry)
        except (OSError, UnicodeDecodeError) as exc:
            self.problem = "missing" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
            if initial:
                raise ValueError(
                    f"the deny file {self.deny_file!r} is {self.problem}: fix the path, or create the file (empty "
                    "denies no one); without it neither the deny list nor its * kill switch would apply"
                ) from None
            logger.error(
                "orga proxy: the deny file is %s; keeping the last good list (%d principal(s), minting %s)",
                self.problem,
                len(self._file_denied),
                "stopped" if self._file_all_off else "on",
            )
            return
        with self._lock:
            self.problem = None
            self._file_stamp = stamp
            self._file_all_off = "*" in entries
            self._file_denied = frozenset(entries - {"*"})
        logger.info(
            "orga proxy: deny file loaded (%d principal(s), minting %s)",
            len(entries - {"*"}),
            "stopped" if "*" in entries else "on",
        )

    def __repr__(self) -> str:
        return f"KillSwitch(deny_file={self.deny_file!r}, minting_enabled={self.minting_enabled})"
