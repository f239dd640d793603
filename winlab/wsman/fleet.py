"""Run many simulated hosts in one process: one asyncio loop in a background thread, one listener per
host address (and scheme)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import tempfile
import threading
from collections.abc import Coroutine, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from winlab.wsman.clock import Clock, SystemClock
from winlab.wsman.server import HostServer
from winlab.wsman.shellhost import ShellHostFactory, basic_shell_host
from winlab.wsman.spec import HostSpec
from winlab.wsman.tls import LabAuthority

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per host: up to two listeners plus a handful of client connections.
_FILES_PER_HOST = 8


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class Fleet:
    """N simulated WinRM hosts in one process.

    >>> with Fleet([HostSpec("MAIL01", "127.77.0.1", accounts={"Administrator": "pw"})], lab_dir) as fleet:
    ...     fleet.host("MAIL01").endpoint("http")

    `lab_dir` receives ca.pem (trust it with `ca_trust_path`), host certificates and the NTLM account files.
    `shell_host_factory` decides what shells run (default: cmd built-ins only, PowerShell refused).
    The loop runs in a daemon thread; everything on HostServer that touches sockets goes through
    the fleet's methods (`set_down`) so it runs on that loop.
    """

    def __init__(
        self,
        specs: Iterable[HostSpec],
        lab_dir: Path | None = None,
        *,
        clock: Clock | None = None,
        shell_host_factory: ShellHostFactory = basic_shell_host,
    ) -> None:
        self.specs = list(specs)
        names = [s.name.upper() for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError("host names must be unique")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if lab_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="winlab-")
            lab_dir = Path(self._tmp.name)
        self.lab_dir = lab_dir
        self.lab_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock or SystemClock()
        self.shell_host_factory = shell_host_factory
        self.hosts: dict[str, HostServer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_path(self) -> Path:
        return self.lab_dir / "ca.pem"

    def host(self, name: str) -> HostServer:
        return self.hosts[name.upper()]

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("fleet already started")
        raise_open_files_limit(1024 + _FILES_PER_HOST * len(self.specs))
        authority = LabAuthority(self.lab_dir) if any(s.https_port is not None for s in self.specs) else None
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="winlab-fleet", daemon=True)
        self._thread.start()
        ready.wait()
        for spec in self.specs:
            self.hosts[spec.name.upper()] = HostServer(
                spec,
                lab_dir=self.lab_dir,
                clock=self.clock,
                shell_host_factory=self.shell_host_factory,
                authority=authority,
            )
        try:
            self._run(self._start_all())
        except BaseException:
            self.stop()
            raise

    async def _start_all(self) -> None:
        await asyncio.gather(*(h.start() for h in self.hosts.values()))

    async def _stop_all(self) -> None:
        await asyncio.gather(*(h.stop() for h in self.hosts.values()), return_exceptions=True)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("fleet not started")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._stop_all())
        except Exception:
            log.exception("stopping the fleet failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = None
        self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def set_down(self, name: str, down: bool = True) -> None:
        """Host down: its listeners close (new connections are refused) and its connections are cut."""
        host = self.host(name)
        self._run(host.set_down(down))

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
