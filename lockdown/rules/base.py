"""The pydantic base every lockdown model derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LockdownModel(BaseModel):
    """Immutable, closed model: unknown keys are errors, so a typo in a profile or a
    surprise field from an agent is reported instead of silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)
