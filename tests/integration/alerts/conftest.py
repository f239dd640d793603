"""Alerts reuse the jobs tests' scripted agent (the WinRM path is tested against winlab elsewhere)."""

from __future__ import annotations

from tests.integration.jobs.conftest import ScriptedAgent, agent, inline, sent

__all__ = ["ScriptedAgent", "agent", "inline", "sent"]
