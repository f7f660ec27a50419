"""Checks the body of a Dash callback request (POST ``/_dash-update-component``)
against the callbacks the app registered, before Dash reads it.

dash-renderer always sends a JSON object naming a registered callback (``output``),
its outputs, inputs and state in the registered order, and the ids of the inputs that
changed. Dash assumes that shape and answers anything else with an exception (HTTP
500); the app answers it with 400 and the reason instead. The values inside are
checked by each callback."""

from __future__ import annotations

import json

SCALAR_ID_VALUE = (str, int, float, bool)
LIST_WILDCARDS = (["ALL"], ["ALLSMALLER"])  # these send a list of components, MATCH sends one


def _pattern(registered_id: str):
    """A registered id as Dash stores it: a plain string, or a JSON object whose
    wildcard values are ``["MATCH"]``, ``["ALL"]`` or ``["ALLSMALLER"]``."""
    return json.loads(registered_id) if registered_id.startswith("{") else registered_id


def _id_matches(pattern, sent) -> bool:
    if isinstance(pattern, str):
        return sent == pattern
    if not isinstance(sent, dict) or set(sent) != set(pattern):
        return False
    for key, expected in pattern.items():
        value = sent[key]
        if isinstance(expected, list):  # a wildcard: any plain value
            if not isinstance(value, SCALAR_ID_VALUE):
                return False
        elif value != expected:
            return False
    return True


def _dependency_problem(sent, registered: dict, what: str) -> str | None:
    """None if ``sent`` is what dash-renderer sends for the registered dependency
    ``{"id": ..., "property": ...}``, else the reason."""
    pattern = _pattern(registered["id"])
    many = isinstance(pattern, dict) and any(value in LIST_WILDCARDS for value in pattern.values())
    items = sent if many and isinstance(sent, list) else [sent]
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("property"), str):
            return f"cada item de {what} deve ser um objeto com id e property"
        if item["property"].split("@")[0] != registered["property"].split("@")[0] or not _id_matches(
            pattern, item.get("id")
        ):
            return f"{what} não corresponde ao callback ({registered['id']}.{registered['property']})"
    return None


def _list_problem(sent, registered: list[dict], what: str) -> str | None:
    if not isinstance(sent, list) or len(sent) != len(registered):
        return f"{what} deve ser uma lista de {len(registered)} itens"
    for item, expected in zip(sent, registered):
        if problem := _dependency_problem(item, expected, what):
            return problem
    return None


def callback_request_problem(body, callback_map: dict) -> str | None:
    """None if ``body`` is a well-formed request for one of the registered callbacks,
    else the reason (Portuguese)."""
    if not isinstance(body, dict):
        return "o corpo deve ser um objeto JSON"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "output não é um callback deste app"
    callback = callback_map[output]
    if problem := _list_problem(body.get("inputs"), callback["inputs"], "inputs"):
        return problem
    if problem := _list_problem(body.get("state", []), callback.get("state", []), "state"):
        return problem
    outputs = callback["output"]
    if isinstance(outputs, (list, tuple)):
        problem = _list_problem(body.get("outputs"), [o.to_dict() for o in outputs], "outputs")
    else:
        problem = _dependency_problem(body.get("outputs"), outputs.to_dict(), "outputs")
    if problem:
        return problem
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(prop_id, str) for prop_id in changed):
        return "changedPropIds deve ser uma lista de textos"
    return None
