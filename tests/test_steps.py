"""The dialog's wiring, checked on the code: the step table, the fixed lists and the size of its parts.

A step the state can hold but the table does not name would fail the first person to reach it; here it
fails a test instead.
"""

from __future__ import annotations

import ast
import inspect
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialogs import identify
from dialogs.catalog import EDITABLE, REASONS, SAFETY_REASON
from dialogs.lifecycle import Status
from dialogs.machine import FLOW, STEPS
from dialogs.ports import ApplicationView
from dialogs.state import Step
from storage.models import Application

DIALOGS = Path(__file__).parents[1] / "dialogs"
LONGEST_FUNCTION = 60  # lines, decorators left out


def test_every_step_has_a_rule() -> None:
    missing = [step.value for step in Step if step not in STEPS]
    assert not missing, f"steps without an entry in dialogs.machine.STEPS: {missing}"


@pytest.mark.parametrize("step", list(Step), ids=str)
def test_a_rule_names_a_handler_and_a_question(step: Step) -> None:
    rule = STEPS[step]
    assert inspect.iscoroutinefunction(rule.handle)
    assert inspect.iscoroutinefunction(rule.ask)
    assert list(inspect.signature(rule.handle).parameters) == ["state", "event", "ctx"]
    assert list(inspect.signature(rule.ask).parameters) == ["state", "ctx"]


def test_identification_is_handled_in_its_own_module() -> None:
    assert identify.IDENTIFY_STEPS == {Step.ASK_PHONE, Step.ASK_CODE, Step.ASK_OTP}
    for step in identify.IDENTIFY_STEPS:
        assert STEPS[step].handle.__module__ == identify.__name__
        assert STEPS[step].ask.__module__ == identify.__name__


def test_no_handler_is_found_by_a_name_built_at_run_time() -> None:
    """`getattr(self, f"_on_{step}")` hid the graph from readers and tools; the table replaced it."""
    for path in sorted(DIALOGS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
                built = len(node.args) > 1 and not isinstance(node.args[1], ast.Constant)
                assert not built, f"{path.name}:{node.lineno} looks a name up at run time"


def test_the_review_edits_only_steps_of_the_application() -> None:
    assert set(EDITABLE.values()) <= set(FLOW) - {Step.REVIEW}
    assert all(re.fullmatch(r"[a-z_]+", name) for name in EDITABLE)  # also a catalog key: review.edit_<name>


def test_reason_ids_fit_where_they_go() -> None:
    """An id is a catalog key (`reason.<id>`), part of a button id and stored with the application."""
    column = Application.__table__.c.reason.type.length
    assert len(set(REASONS)) == len(REASONS)
    assert SAFETY_REASON in REASONS
    for reason in REASONS:
        assert re.fullmatch(r"[a-z_]+", reason), reason
        assert len(reason) <= column, reason


def _view(status: str) -> ApplicationView:
    return ApplicationView(
        id=1,
        number="TX-2026-000001",
        kind="residential",
        account_code="168808605066007",
        metering_point_code=None,
        reason="no_power",
        status=status,
        created_at=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
        result=None,
    )


@pytest.mark.parametrize("status", list(Status), ids=str)
def test_what_a_status_means_to_the_subscriber(status: Status) -> None:
    """As the dialog showed it before it asked the view: a due date while open, "cancel" until work starts."""
    view = _view(status.value)
    assert view.open == (status in (Status.REGISTERED, Status.IN_PROGRESS, Status.REOPENED))
    assert view.cancellable == (status == Status.REGISTERED)


def test_a_status_the_lifecycle_does_not_know_is_neither_open_nor_cancellable() -> None:
    view = _view("archived")
    assert not view.open
    assert not view.cancellable


@pytest.mark.parametrize("name", ["machine.py", "identify.py"])
def test_the_conversation_never_spells_a_status(name: str) -> None:
    values = {status.value for status in Status}
    for node in ast.walk(ast.parse((DIALOGS / name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in values, f"{name}:{node.lineno} spells the status {node.value!r}"


def test_no_function_in_dialogs_is_long() -> None:
    long = []
    for path in sorted(DIALOGS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"split these into named helpers: {long}"
