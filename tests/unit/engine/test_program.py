"""The wire contract of agent v2: which programs are valid, and how a result is looked into.

A program the engine builds wrongly must be refused here, before it reaches a host; a result the
host returns is looked up by step id and by path exactly as the executor does.
"""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from lockdown.engine.program import Program, ProgramResult, Step, StepResult, lookup


def _program(**fields: object) -> Program:
    data: dict[str, object] = {"agent_version": "2.0.0", "job_id": "j-1", "mode": "apply", "steps": []}
    data.update(fields)
    return Program.model_validate(data)


def _step(step_id: str, **fields: object) -> dict[str, object]:
    return {"id": step_id, "op": "host_info", **fields}


def test_an_unknown_primitive_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="unknown primitive 'format_disk'"):
        Step(id="s", op="format_disk")


@pytest.mark.parametrize("name", ["SID_1", "A", "AFTER_C12"])
def test_bind_names_are_upper_case_variables(name: str) -> None:
    assert Step(id="s", op="host_info", bind={name: "x"}).bind == {name: "x"}


@pytest.mark.parametrize("name", ["sid", "1A", "A-B", "A B", "_A", "A\n", ""])
def test_a_bind_name_that_is_not_a_variable_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(f"bad variable name {name!r}")):
        Step(id="s", op="host_info", bind={"OK": "x", name: "y"})


def test_args_must_be_exactly_the_primitives_with_optional_ones_allowed_out() -> None:
    read = Step(id="s", op="sd_read", args={"kind": "path", "path": "C:\\x"})
    assert read.args == {"kind": "path", "path": "C:\\x"}
    assert Step(id="s", op="sd_read", args={"kind": "key", "path": "HKLM\\X", "view": 64}).args["view"] == 64
    with pytest.raises(ValidationError, match=r"sd_read: unknown args \['extra'\], missing args \[\]"):
        Step(id="s", op="sd_read", args={"kind": "path", "path": "C:\\x", "extra": 1})
    with pytest.raises(ValidationError, match=r"sd_read: unknown args \[\], missing args \['kind', 'path'\]"):
        Step(id="s", op="sd_read", args={})
    with pytest.raises(ValidationError, match=r"lsa_add: unknown args \['view\?'\], missing args \['right'\]"):
        Step(id="s", op="lsa_add", args={"sid": "S-1-5-18", "view?": 64})


def test_step_ids_must_be_unique_across_steps_and_on_failure() -> None:
    with pytest.raises(ValidationError, match="step ids must be unique"):
        _program(steps=[_step("a"), _step("a")])
    with pytest.raises(ValidationError, match="step ids must be unique"):
        _program(steps=[_step("a")], on_failure=[_step("a")])
    assert len(_program(steps=[_step("a")], on_failure=[_step("b")]).on_failure) == 1


def test_when_ok_names_only_earlier_steps() -> None:
    ok = _program(steps=[_step("a"), _step("b"), _step("c", when_ok=["a", "b"])])
    assert ok.steps[2].when_ok == ["a", "b"]
    with pytest.raises(ValidationError, match="step b: when_ok names a step that does not come before it"):
        _program(steps=[_step("a"), _step("b", when_ok=["a", "c"]), _step("c")])
    with pytest.raises(ValidationError, match="step a: when_ok"):
        _program(steps=[_step("a", when_ok=["a"])])


def test_an_on_failure_step_waits_only_for_a_step_of_the_program() -> None:
    ok = _program(steps=[_step("a")], on_failure=[_step("u", when_done="a"), _step("v")])
    assert ok.on_failure[0].when_done == "a"
    with pytest.raises(ValidationError, match="on_failure step u refers to unknown step v"):
        _program(steps=[_step("a")], on_failure=[_step("v"), _step("u", when_done="v")])


def test_secret_values_are_the_non_empty_secrets_in_clear() -> None:
    program = _program(secrets={"A": "one", "B": "", "C": "three"})
    assert program.secret_values() == ["one", "three"]


def test_the_stdin_json_carries_the_secrets_in_clear_sorted_and_compact() -> None:
    program = _program(secrets={"B": "pw-b", "A": "pw-a"}, steps=[_step("s")])
    text = program.to_stdin_json()
    data = json.loads(text)
    assert data["secrets"] == {"A": "pw-a", "B": "pw-b"}
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert Program.model_validate(data).secret_values() == ["pw-a", "pw-b"]
    assert "pw-a" not in program.model_dump_json()


def test_by_id_finds_steps_and_on_failure_steps() -> None:
    a = StepResult(id="a", op="host_info", status="ok", result={})
    u = StepResult(id="u", op="lsa_remove", status="skipped")
    result = ProgramResult(steps=[a], on_failure=[u])
    assert result.by_id() == {"a": a, "u": u}


@pytest.mark.parametrize(
    ("path", "value"),
    [("a", {"b": [10, {"c": "x"}]}), ("a.b.0", 10), ("a.b.1.c", "x"), ("a.b.2", None), ("a.b.x", None),
     ("a.b.-1", None), ("a.b.1.c.d", None), ("z", None), ("a.z.b", None), ("n", None)],
)  # fmt: skip
def test_lookup_follows_dotted_paths_and_list_indexes(path: str, value: object) -> None:
    assert lookup({"a": {"b": [10, {"c": "x"}]}, "n": None}, path) == value


def test_lookup_of_a_list_at_the_top() -> None:
    assert lookup([["x", "y"]], "0.1") == "y"
    assert lookup("text", "0") is None


def test_the_stdin_json_serialises_arg_values_as_pydantic_json_does() -> None:
    # args are `Any`: a set of names the engine might pass must still travel as a JSON list
    step = Step(id="s", op="sid_lookup", args={"names": {"A"}})
    data = json.loads(_program(steps=[step]).to_stdin_json())
    assert data["steps"][0]["args"] == {"names": ["A"]}
