"""Creates the template's tables, queues, buses, topics and secrets in the current AWS endpoint.

The local stack and the integration tests provision from template.yaml itself, so a table,
index or queue setting cannot differ between the cloud and the laptop. Intrinsics are
resolved as CloudFormation would for a stack named `course-payments-<stage>`; resource
types the local stack does not emulate (functions, log groups, alarms, IAM, KMS) are
skipped with one log line each. Provisioning twice is harmless: existing resources are
reused (a table whose keys or indexes differ from the template is an error, not reused).

    python -m devstack.provision --stage dev [--parameter Name=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

import boto3
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
EVENT_BUS = "AWS::Events::EventBus"
TOPIC = "AWS::SNS::Topic"
SECRET = "AWS::SecretsManager::Secret"


def stack_name(stage: str) -> str:
    return f"course-payments-{stage}"


class ProvisioningError(RuntimeError):
    """The template cannot be provisioned locally as written (or with these parameters)."""


@dataclass(frozen=True, slots=True)
class ProvisionedResource:
    logical_id: str
    resource_type: str
    ref: str  # what !Ref returns: a table or bus name, a queue URL, a topic or secret ARN
    attributes: Mapping[str, str]  # what !GetAtt returns, by attribute name


class ProvisionedResources(Mapping[str, str]):
    """Logical id -> what `!Ref` returns for every resource created, plus the stack's context."""

    def __init__(
        self,
        *,
        stage: str,
        region: str,
        account_id: str,
        parameters: Mapping[str, str | list[str]],
        resources: Mapping[str, ProvisionedResource],
    ) -> None:
        self.stage = stage
        self.stack_name = stack_name(stage)
        self.region = region
        self.account_id = account_id
        self.parameters = dict(parameters)
        self.resources = dict(resources)

    def __getitem__(self, logical_id: str) -> str:
        return self.resources[logical_id].ref

    def __iter__(self) -> Iterator[str]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    def get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.resources[logical_id].attributes[attribute]
        except KeyError:
            raise ProvisioningError(f"no attribute {logical_id}.{attribute} locally") from None

    def of_type(self, resource_type: str) -> dict[str, ProvisionedResource]:
        return {k: r for k, r in self.resources.items() if r.resource_type == resource_type}


def provision(
    template: Mapping[str, Any],
    *,
    stage: str,
    parameters: Mapping[str, str] | None = None,
    dynamodb: Any = None,
    sqs: Any = None,
    events: Any = None,
    sns: Any = None,
    secretsmanager: Any = None,
    sts: Any = None,
) -> ProvisionedResources:
    """Create every supported resource of `template` (in dependency order) and say where.

    `parameters` override the template's parameter defaults (Stage is `stage`). Clients
    default to boto3's, which honour AWS_ENDPOINT_URL (the moto server) and moto's
    in-process mock alike.
    """
    clients = _Clients(
        dynamodb=dynamodb, sqs=sqs, events=events, sns=sns, secretsmanager=secretsmanager, sts=sts
    )
    resolver = _Resolver(
        template,
        stage=stage,
        region=clients.get("dynamodb").meta.region_name,
        account_id=clients.get("sts").get_caller_identity()["Account"],
        parameters=_parameter_values(template, stage, parameters or {}),
    )
    declared: dict[str, Any] = template.get("Resources", {})
    wanted: dict[str, Mapping[str, Any]] = {}
    for logical_id, resource in declared.items():
        kind = resource.get("Type", "")
        if kind not in _PROVISIONERS:
            logger.info("skipped %s (%s): not emulated by the local stack", logical_id, kind)
        elif "Condition" in resource and not resolver.condition(resource["Condition"]):
            logger.info("skipped %s: condition %s is false", logical_id, resource["Condition"])
        else:
            wanted[logical_id] = resource
    for logical_id in _creation_order(wanted):
        resource = wanted[logical_id]
        properties = resource.get("Properties", {})
        created = _PROVISIONERS[resource["Type"]](logical_id, properties, resolver, clients)
        resolver.provisioned[logical_id] = created
    return ProvisionedResources(
        stage=stage,
        region=resolver.region,
        account_id=resolver.account_id,
        parameters=resolver.parameters,
        resources=resolver.provisioned,
    )


def function_environment(
    template: Mapping[str, Any],
    function_logical_id: str,
    resources: ProvisionedResources,
    *,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A function's environment as Lambda would see it: Globals merged with its own variables.

    References resolve to the provisioned resources and the parameters given to
    `provision`. `overrides` replace variables outright (say, a local base URL) and are
    not resolved, so a variable the local stack cannot resolve can still be supplied.
    """
    function = template.get("Resources", {}).get(function_logical_id)
    if function is None:
        raise ProvisioningError(f"no resource {function_logical_id} in the template")
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    own_env = function.get("Properties", {}).get("Environment", {})
    variables = {**global_env.get("Variables", {}), **own_env.get("Variables", {})}
    resolver = _Resolver(
        template,
        stage=resources.stage,
        region=resources.region,
        account_id=resources.account_id,
        parameters=resources.parameters,
        provisioned=resources.resources,
    )
    environment: dict[str, str] = {}
    for name, expression in variables.items():
        if overrides and name in overrides:
            continue
        try:
            value = resolver.resolve(expression)
        except ProvisioningError as exc:
            raise ProvisioningError(f"{function_logical_id} variable {name}: {exc}") from None
        if value is _NO_VALUE:
            continue
        environment[name] = _environment_text(name, value)
    environment.update(overrides or {})
    return environment


# --- parameters and intrinsic functions ---------------------------------------------


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


def _parameter_values(
    template: Mapping[str, Any], stage: str, overrides: Mapping[str, str]
) -> dict[str, str | list[str]]:
    declared: dict[str, Any] = template.get("Parameters", {})
    unknown = set(overrides) - set(declared)
    if unknown:
        raise ProvisioningError(f"the template declares no parameter {', '.join(sorted(unknown))}")
    values: dict[str, str | list[str]] = {}
    for name, spec in declared.items():
        if name == "Stage":
            raw: Any = stage
        elif name in overrides:
            raw = overrides[name]
        elif "Default" in spec:
            raw = spec["Default"]
        else:
            continue  # an error only if something refers to it
        text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        allowed = spec.get("AllowedValues")
        if allowed is not None and text not in [str(a) for a in allowed]:
            raise ProvisioningError(f"parameter {name}={text!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, text):
            raise ProvisioningError(f"parameter {name}={text!r} does not match {pattern}")
        is_list = str(spec.get("Type", "")).startswith(("CommaDelimitedList", "List<"))
        values[name] = [part.strip() for part in text.split(",")] if is_list else text
    return values


class _Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and what exists."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        stage: str,
        region: str,
        account_id: str,
        parameters: Mapping[str, str | list[str]],
        provisioned: Mapping[str, ProvisionedResource] | None = None,
    ) -> None:
        self.template = template
        self.stage = stage
        self.region = region
        self.account_id = account_id
        self.parameters = dict(parameters)
        self.provisioned: dict[str, ProvisionedResource] = dict(provisioned or {})
        self._conditions: dict[str, bool] = {}

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::StackName": stack_name(self.stage),
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{stack_name(self.stage)}/local"
            ),
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }.get(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def ref(self, name: str) -> Any:
        pseudo = self.pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        if name in self.template.get("Parameters", {}):
            raise ProvisioningError(f"parameter {name} has no Default: pass a value for it")
        if name in self.provisioned:
            return self.provisioned[name].ref
        raise self._unavailable(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if logical_id in self.provisioned:
            resource = self.provisioned[logical_id]
            if attribute in resource.attributes:
                return resource.attributes[attribute]
            raise ProvisioningError(f"{logical_id} has no attribute {attribute} locally")
        raise self._unavailable(logical_id)

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            declared = self.template.get("Conditions", {})
            if name not in declared:
                raise ProvisioningError(f"no condition {name} in the template")
            self._conditions[name] = self._truth(declared[name])
        return self._conditions[name]

    def _truth(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, argument),) = expression.items()
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return _text(left) == _text(right)
            if key == "Fn::Not":
                return not self._truth(argument[0])
            if key == "Fn::And":
                return all(self._truth(a) for a in argument)
            if key == "Fn::Or":
                return any(self._truth(a) for a in argument)
        if isinstance(expression, bool):
            return expression
        raise ProvisioningError(f"not a condition: {expression!r}")

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::GetAtt":
            logical_id, attribute = (
                argument.split(".", 1) if isinstance(argument, str) else argument
            )
            return self.get_att(self.resolve(logical_id), self.resolve(attribute))
        if name == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition) else when_false)
        if name == "Fn::Join":
            delimiter, parts = argument
            return str(delimiter).join(_text(p) for p in self.resolve(parts))
        if name == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(self.resolve(index))]
        if name == "Fn::Split":
            delimiter, text = argument
            return _text(self.resolve(text)).split(delimiter)
        if name == "Fn::FindInMap":
            map_name, first, second = (self.resolve(a) for a in argument)
            try:
                return self.template["Mappings"][map_name][first][second]
            except KeyError:
                raise ProvisioningError(f"no mapping {map_name}.{first}.{second}") from None
        if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._truth({name: argument})
        raise ProvisioningError(f"{name} is not supported by the local stack")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {k: self.resolve(v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return _text(values[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return _text(self.ref(name))

        return _SUB_VARIABLE.sub(substitute, text)

    def _unavailable(self, name: str) -> ProvisioningError:
        declared = self.template.get("Resources", {}).get(name)
        if declared is None:
            return ProvisioningError(f"{name} is neither a parameter nor a resource")
        return ProvisioningError(f"{name} ({declared.get('Type')}) is not created locally")


_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _environment_text(name: str, value: Any) -> str:
    if isinstance(value, dict | list):
        raise ProvisioningError(f"variable {name} resolves to {value!r}, not a string")
    return _text(value)


def _references(value: Any) -> Iterator[str]:
    """Logical ids (and parameter names) an expression refers to."""
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                yield argument
            elif key == "Fn::GetAtt":
                yield argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                for name in _SUB_VARIABLE.findall(text):
                    if not name.startswith("!"):
                        yield name.split(".", 1)[0]
                if not isinstance(argument, str):
                    yield from _references(argument[1])
            else:
                yield from _references(argument)


def _creation_order(wanted: Mapping[str, Mapping[str, Any]]) -> list[str]:
    graph: dict[str, set[str]] = {}
    for logical_id, resource in wanted.items():
        depends_on = resource.get("DependsOn", [])
        names = set(_references(resource.get("Properties", {})))
        names |= {depends_on} if isinstance(depends_on, str) else set(depends_on)
        graph[logical_id] = {name for name in names if name in wanted and name != logical_id}
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise ProvisioningError(f"circular references between {exc.args[1]}") from None


# --- clients --------------------------------------------------------------------------


@dataclass
class _Clients:
    dynamodb: Any = None
    sqs: Any = None
    events: Any = None
    sns: Any = None
    secretsmanager: Any = None
    sts: Any = None
    _created: dict[str, Any] = field(default_factory=dict)

    def get(self, service: str) -> Any:
        given = getattr(self, service)
        if given is not None:
            return given
        if service not in self._created:
            self._created[service] = boto3.client(service)
        return self._created[service]


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _default_name(resolver: _Resolver, logical_id: str) -> str:
    # CloudFormation would add a random suffix; a fixed name keeps local runs repeatable.
    return f"{stack_name(resolver.stage)}-{logical_id}"


# --- DynamoDB ---------------------------------------------------------------------------


def _provision_table(
    logical_id: str, properties: Mapping[str, Any], resolver: _Resolver, clients: _Clients
) -> ProvisionedResource:
    client = clients.get("dynamodb")
    spec = {
        key: resolver.resolve(properties[key])
        for key in (
            "TableName",
            "KeySchema",
            "AttributeDefinitions",
            "BillingMode",
            "ProvisionedThroughput",
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "StreamSpecification",
            "PointInTimeRecoverySpecification",
            "TimeToLiveSpecification",
        )
        if key in properties
    }
    name = spec.get("TableName") or _default_name(resolver, logical_id)
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": spec["KeySchema"],
        "AttributeDefinitions": spec["AttributeDefinitions"],
        "BillingMode": spec.get("BillingMode", "PROVISIONED"),
    }
    provisioned = request["BillingMode"] == "PROVISIONED"
    if provisioned:
        request["ProvisionedThroughput"] = _throughput(spec.get("ProvisionedThroughput"))
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if spec.get(key):
            request[key] = [
                {
                    k: _throughput(v) if k == "ProvisionedThroughput" else v
                    for k, v in index.items()
                    if k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
                }
                for index in spec[key]
            ]
            if provisioned and key == "GlobalSecondaryIndexes":
                for index in request[key]:
                    index.setdefault("ProvisionedThroughput", _throughput(None))
    if "StreamSpecification" in spec:
        request["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": spec["StreamSpecification"]["StreamViewType"],
        }
    # SSE, deletion protection and tags change nothing a local run can observe.
    try:
        table = client.create_table(**request)["TableDescription"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise
        table = client.describe_table(TableName=name)["Table"]
        _check_same_table(logical_id, request, table)
    pitr = spec.get("PointInTimeRecoverySpecification", {})
    if _enabled(pitr.get("PointInTimeRecoveryEnabled")):
        client.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    ttl = spec.get("TimeToLiveSpecification", {})
    if _enabled(ttl.get("Enabled")):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return ProvisionedResource(logical_id, TABLE, name, attributes)


def _throughput(value: Any) -> dict[str, int]:
    value = value or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    return {k: int(value[k]) for k in ("ReadCapacityUnits", "WriteCapacityUnits")}


def _enabled(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _check_same_table(logical_id: str, wanted: Mapping[str, Any], table: Mapping[str, Any]) -> None:
    """An existing table is reused only if it has the template's keys and indexes."""

    def shape(description: Mapping[str, Any]) -> tuple[Any, ...]:
        def keys(schema: list[dict[str, str]]) -> tuple[tuple[str, str], ...]:
            return tuple((k["AttributeName"], k["KeyType"]) for k in schema)

        indexes = sorted(
            (
                index["IndexName"],
                keys(index["KeySchema"]),
                index["Projection"]["ProjectionType"],
                tuple(sorted(index["Projection"].get("NonKeyAttributes", []))),
            )
            for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
            for index in description.get(kind, [])
        )
        stream = description.get("StreamSpecification", {})
        return (
            keys(description["KeySchema"]),
            tuple(indexes),
            stream.get("StreamViewType") if stream.get("StreamEnabled") else None,
        )

    if shape(wanted) != shape(table):
        raise ProvisioningError(
            f"table {table['TableName']} ({logical_id}) exists with other keys, indexes or "
            "stream than template.yaml: reset the emulator (POST /moto-api/reset) and provision "
            "again"
        )


# --- SQS ----------------------------------------------------------------------------------

# Template property -> queue attribute; KMS keys are left out (no KMS locally).
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def _provision_queue(
    logical_id: str, properties: Mapping[str, Any], resolver: _Resolver, clients: _Clients
) -> ProvisionedResource:
    client = clients.get("sqs")
    attributes: dict[str, str] = {}
    for key in _QUEUE_ATTRIBUTES:
        if key in properties:
            value = resolver.resolve(properties[key])
            attributes[key] = (
                json.dumps(value, separators=(",", ":"))
                if isinstance(value, dict)
                else _text(value)
            )
    fifo = attributes.get("FifoQueue") == "true"
    name = resolver.resolve(properties.get("QueueName")) or _default_name(resolver, logical_id)
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    try:
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if _error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    else:
        # An existing queue takes the template's current settings (FIFO-ness is fixed).
        settable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
        if settable:
            client.set_queue_attributes(QueueUrl=url, Attributes=settable)
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return ProvisionedResource(
        logical_id, QUEUE, url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
    )


# --- EventBridge, SNS, Secrets Manager ------------------------------------------------------


def _provision_event_bus(
    logical_id: str, properties: Mapping[str, Any], resolver: _Resolver, clients: _Clients
) -> ProvisionedResource:
    client = clients.get("events")
    name = resolver.resolve(properties["Name"])
    try:
        arn = client.create_event_bus(Name=name)["EventBusArn"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceAlreadyExistsException":
            raise
        arn = client.describe_event_bus(Name=name)["Arn"]
    return ProvisionedResource(logical_id, EVENT_BUS, name, {"Arn": arn, "Name": name})


def _provision_topic(
    logical_id: str, properties: Mapping[str, Any], resolver: _Resolver, clients: _Clients
) -> ProvisionedResource:
    client = clients.get("sns")
    fifo = _enabled(resolver.resolve(properties.get("FifoTopic", False)))
    name = resolver.resolve(properties.get("TopicName")) or _default_name(resolver, logical_id)
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {"FifoTopic": "true"} if fifo else {}
    if "DisplayName" in properties:
        attributes["DisplayName"] = _text(resolver.resolve(properties["DisplayName"]))
    # Creating a topic that exists returns it: the call is idempotent.
    arn = client.create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return ProvisionedResource(logical_id, TOPIC, arn, {"TopicArn": arn, "TopicName": name})


def _provision_secret(
    logical_id: str, properties: Mapping[str, Any], resolver: _Resolver, clients: _Clients
) -> ProvisionedResource:
    client = clients.get("secretsmanager")
    name = resolver.resolve(properties.get("Name")) or _default_name(resolver, logical_id)
    if "SecretString" in properties:
        value = _text(resolver.resolve(properties["SecretString"]))
    else:
        value = _generated_secret(resolver.resolve(properties.get("GenerateSecretString", {})))
    request = {"Name": name, "SecretString": value}
    if "Description" in properties:
        request["Description"] = _text(resolver.resolve(properties["Description"]))
    try:
        arn = client.create_secret(**request)["ARN"]
    except ClientError as exc:
        if _error_code(exc) != "ResourceExistsException":
            raise
        # Keep the value a running local stack may already have handed out.
        arn = client.describe_secret(SecretId=name)["ARN"]
    return ProvisionedResource(logical_id, SECRET, arn, {"Id": arn})


def _generated_secret(spec: Mapping[str, Any]) -> str:
    """What GenerateSecretString would produce: a random password, or a JSON with one."""
    length = int(spec.get("PasswordLength", 32))
    alphabet = string.ascii_letters + string.digits
    if not _enabled(spec.get("ExcludePunctuation", False)):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    excluded = set(spec.get("ExcludeCharacters", ""))
    alphabet = "".join(c for c in alphabet if c not in excluded)
    password = "".join(secrets.choice(alphabet) for _ in range(length))
    if "SecretStringTemplate" in spec and "GenerateStringKey" in spec:
        document = json.loads(spec["SecretStringTemplate"])
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)
    return password


_PROVISIONERS: dict[
    str, Callable[[str, Mapping[str, Any], _Resolver, _Clients], ProvisionedResource]
] = {
    TABLE: _provision_table,
    QUEUE: _provision_queue,
    EVENT_BUS: _provision_event_bus,
    TOPIC: _provision_topic,
    SECRET: _provision_secret,
}


def main(argv: list[str] | None = None) -> None:
    from devstack.template import load_template

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = dict(item.split("=", 1) for item in args.parameter)
    resources = provision(load_template(args.template), stage=args.stage, parameters=overrides)
    print(json.dumps(dict(resources), indent=2))


if __name__ == "__main__":
    main()
