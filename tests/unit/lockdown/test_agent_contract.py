"""The agent contract: checked-in JSON Schemas match the models; requests are well-formed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from lockdown.rules.builtin import load_builtin_profile
from lockdown.rules.compile import compile_plan
from lockdown.rules.contract import SCHEMA_FILES, AgentRequest, AgentResult, generate_schemas, schema_text
from tests.unit.lockdown.factories import facts_2022, hardened_observations

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "lockdown" / "agent" / "schema"


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_checked_in_schema_matches_the_generated_one(name):
    # Regenerate with: .venv/bin/python -m lockdown.rules.regenerate_schemas
    checked_in = (SCHEMA_DIR / SCHEMA_FILES[name]).read_text(encoding="utf-8")
    assert checked_in == schema_text(generate_schemas()[name])


def test_schemas_describe_the_contract_fields():
    schemas = generate_schemas()
    assert {"agent_version", "job_id", "mode", "steps", "on_failure", "secrets"} <= set(
        schemas["program"]["properties"]
    )
    assert {"agent_version", "job_id", "steps", "aborted_at", "on_failure", "vars", "error"} <= set(
        schemas["result"]["properties"]
    )
    assert json.loads(json.dumps(schemas)) == schemas


def _plan():
    return compile_plan(load_builtin_profile(), facts_2022())


def test_apply_request_keeps_the_password_secret():
    request = AgentRequest(agent_version="1.0.0", mode="apply", job_id="j1", plan=_plan(), service_password="s3cret!Pw")
    assert "s3cret!Pw" not in request.model_dump_json()
    assert "s3cret!Pw" not in repr(request)


def test_password_is_refused_outside_apply():
    with pytest.raises(ValidationError, match="only sent with mode apply"):
        AgentRequest(agent_version="1.0.0", mode="verify", job_id="j1", plan=_plan(), service_password="x")


def test_verify_without_a_plan_is_refused():
    with pytest.raises(ValidationError, match="needs a plan"):
        AgentRequest(agent_version="1.0.0", mode="verify", job_id="j1")


def test_result_with_unknown_fields_or_bad_sids_is_refused():
    base = {"agent_version": "1.0.0", "mode": "verify", "job_id": "j1"}
    with pytest.raises(ValidationError):
        AgentResult.model_validate({**base, "surprise": 1})
    item = {"rule_id": "r.x", "target": "t", "dacl": [{"sid": "S-1-bogus", "type": "allow", "mask": 1}]}
    with pytest.raises(ValidationError, match="malformed SID"):
        AgentResult.model_validate({**base, "items": [item]})


def test_result_round_trips_observations():
    plan = _plan()
    result = AgentResult(agent_version="1.0.0", mode="verify", job_id="j1", items=hardened_observations(plan))
    assert AgentResult.model_validate_json(result.model_dump_json()) == result
