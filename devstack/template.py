"""Reads template.yaml as CloudFormation does: short-form intrinsics become their long form.

`!Ref X` becomes `{"Ref": "X"}`, `!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`,
`!Sub ...` becomes `{"Fn::Sub": ...}` and so on, so the house-rule tests and the local stack
read the same structure CloudFormation and the SAM translator see. Dates stay strings
(`AWSTemplateFormatVersion: 2010-09-09`) and a duplicated key is an error, not a silent
overwrite.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TemplateError", "load_template", "parse_template", "resources_of_type"]


class TemplateError(ValueError):
    """The template is not valid YAML, uses an unknown tag, or repeats a key."""


# Tags whose long form is "Fn::<Name>" with the node's value unchanged.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader plus the short-form tags; no timestamps; duplicate keys rejected."""


# CloudFormation keeps 2010-09-09 as a string; PyYAML would make it a date.
_CloudFormationLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _CloudFormationLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise TemplateError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


def _construct_value(loader: _CloudFormationLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(loader, node)
    raise TemplateError(f"unsupported YAML node {node!r}")  # pragma: no cover


def _long_form(key: str) -> Callable[[_CloudFormationLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: _CloudFormationLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _construct_value(loader, node)}

    return construct


def _construct_get_att(loader: _CloudFormationLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_value(loader, node)
    if isinstance(value, str):
        # "Resource.Attribute.With.Dots": only the first dot separates the resource.
        resource, dot, attribute = value.partition(".")
        if not dot or not resource or not attribute:
            raise TemplateError(
                f"!GetAtt {value!r} at line {node.start_mark.line + 1} is not Resource.Attribute"
            )
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


_CloudFormationLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)
_CloudFormationLoader.add_constructor("!Ref", _long_form("Ref"))
_CloudFormationLoader.add_constructor("!Condition", _long_form("Condition"))
_CloudFormationLoader.add_constructor("!GetAtt", _construct_get_att)
for _name in _FN_TAGS:
    _CloudFormationLoader.add_constructor(f"!{_name}", _long_form(f"Fn::{_name}"))


def parse_template(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse template text; `source` names it in error messages."""
    try:
        document = yaml.load(text, Loader=_CloudFormationLoader)  # noqa: S506 (safe loader subclass)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{source}: {exc}") from exc
    except TemplateError as exc:
        raise TemplateError(f"{source}: {exc}") from None
    if not isinstance(document, dict):
        raise TemplateError(f"{source}: a template is a mapping, got {type(document).__name__}")
    return document


def load_template(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a CloudFormation/SAM template file with its intrinsics in long form."""
    template_path = Path(path)
    return parse_template(template_path.read_text(encoding="utf-8"), source=str(template_path))


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id to resource, for every resource of one type (e.g. "AWS::SQS::Queue")."""
    resources: dict[str, dict[str, Any]] = template.get("Resources", {})
    return {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource.get("Type") == resource_type
    }
