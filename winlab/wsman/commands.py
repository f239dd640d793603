"""One running command of a shell: its stdin, its output released over time, its exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from winlab.wsman.cmdexe import Finished, RunPowerShell, codec_for, encode_for_console
from winlab.wsman.shellhost import ShellHost, StreamName, clixml_error

log = logging.getLogger(__name__)

# What a cmd.exe child returns when stopped with ctrl_c (STATUS_CONTROL_C_EXIT).
CTRL_C_EXIT = -1073741510


@dataclass(frozen=True)
class ReceiveResult:
    """Output handed out by one Receive, in order, plus whether the command is over."""

    pieces: list[tuple[StreamName, bytes]]
    done: bool
    exit_code: int


class Command:
    """A command's life: waiting for stdin (if any was announced), running, done.

    Output becomes available at loop times (real seconds: long-running commands are a benchmark feature);
    `receive` hands out at most `max_bytes` per call, waiting up to the operation timeout for something.
    """

    def __init__(
        self,
        command_id: str,
        plan: Finished | RunPowerShell,
        host: ShellHost,
        codepage: int,
        now: Callable[[], float],
    ) -> None:
        self.id = command_id
        self._plan = plan
        self._host = host
        self._codepage = codepage
        self._now = now
        self._events: deque[tuple[float, StreamName, bytes]] = deque()
        self._exit_at: float | None = None
        self.exit_code = 0
        self._stdin = bytearray()
        self._stdin_open = False
        self._stdin_closed = False
        self._changed = asyncio.Event()
        self.started = False
        if isinstance(plan, Finished):
            self._finish_immediately(plan)

    def _finish_immediately(self, plan: Finished) -> None:
        t0 = self._now()
        if plan.stdout:
            self._events.append((t0, "stdout", plan.stdout))
        if plan.stderr:
            self._events.append((t0, "stderr", plan.stderr))
        self.exit_code = plan.exit_code
        self._exit_at = t0
        self.started = True

    @property
    def stdin_closed(self) -> bool:
        return self._stdin_closed

    def send_stdin(self, data: bytes, end: bool) -> None:
        if self._stdin_closed:
            return
        self._stdin_open = True
        self._stdin.extend(data)
        if end:
            self._stdin_closed = True
        self._changed.set()

    def stop(self, exit_code: int) -> None:
        """ctrl_c / terminate: the process ends now, output not yet produced is lost."""
        now = self._now()
        if not self.started or self._exit_at is None or self._exit_at > now:
            self.exit_code = exit_code
        self.started = True
        self._events = deque(e for e in self._events if e[0] <= now)
        self._exit_at = now
        self._changed.set()

    def _maybe_start(self) -> None:
        if self.started or not isinstance(self._plan, RunPowerShell):
            return
        if self._stdin_open and not self._stdin_closed:
            return  # the process is still reading stdin
        stdin = bytes(self._stdin)
        script = self._plan.script
        if script is None:
            script = stdin.decode(codec_for(self._codepage), errors="replace")
            stdin = b""
        t0 = self._now()
        self.started = True
        try:
            result = self._host.run_powershell(script, stdin, self._codepage)
        except Exception as exc:  # the model failing must look like a failing script, not a dead server
            log.exception("run_powershell failed")
            self._events.append((t0, "stderr", encode_for_console(clixml_error(f"winlab: {exc}"), self._codepage)))
            self.exit_code = 1
            self._exit_at = t0
            return
        last = t0
        for chunk in sorted(result.chunks, key=lambda c: c.after_s):
            at = t0 + max(0.0, chunk.after_s)
            last = max(last, at)
            self._events.append((at, chunk.stream, self._bytes(chunk.data)))
        end = max(last, t0 + max(0.0, result.runtime_s))
        if result.stdout:
            self._events.append((end, "stdout", self._bytes(result.stdout)))
        if result.stderr:
            self._events.append((end, "stderr", self._bytes(result.stderr)))
        self.exit_code = result.exit_code
        self._exit_at = end

    def _bytes(self, data: str | bytes) -> bytes:
        return data if isinstance(data, bytes) else encode_for_console(data, self._codepage)

    def _take(self, max_bytes: int) -> tuple[list[tuple[StreamName, bytes]], bool]:
        now = self._now()
        pieces: list[tuple[StreamName, bytes]] = []
        budget = max_bytes
        while self._events and self._events[0][0] <= now and budget > 0:
            at, stream, data = self._events.popleft()
            if len(data) > budget:
                self._events.appendleft((at, stream, data[budget:]))
                data = data[:budget]
            pieces.append((stream, data))
            budget -= len(data)
        done = self.started and not self._events and self._exit_at is not None and self._exit_at <= now
        return pieces, done

    async def receive(self, max_bytes: int, timeout_s: float) -> ReceiveResult | None:
        """Output available now, or wait for some; None when the operation timeout passes with none."""
        deadline = self._now() + timeout_s
        while True:
            self._maybe_start()
            pieces, done = self._take(max_bytes)
            if pieces or done:
                return ReceiveResult(pieces, done, self.exit_code)
            now = self._now()
            wake = deadline
            if self._events:
                wake = min(wake, self._events[0][0])
            if self._exit_at is not None:
                wake = min(wake, self._exit_at)
            if now >= deadline:
                return None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, wake - now))
