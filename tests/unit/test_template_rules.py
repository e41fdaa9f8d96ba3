"""House rules over template.yaml: pure checks of the parsed template, no AWS and no SAM CLI.

Each test collects every violation and fails once with all of them, naming the resource and
what to change, so a failing run reads as a to-do list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.template import TemplateError, load_template, parse_template, resources_of_type

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO / "template.yaml"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
FOURTEEN_DAYS = 14 * 24 * 60 * 60

# Routes that must be reachable without a JWT, and why: PayMob's server cannot send one
# (the HMAC authenticates it), the browser lands on the result page from PayMob's redirect,
# and the health check is for load balancers and uptime probes.
PUBLIC_ROUTES = {
    ("POST", "/api/payments/webhook"),
    ("GET", "/courses/{courseId}/payment/result"),
    ("GET", "/api/health"),
}

# Services whose every action must name its resources: a "*" resource there is a mistake.
SCOPED_SERVICES = {"dynamodb", "sqs", "sns", "events", "secretsmanager", "kms", "lambda", "s3"}
# Actions AWS defines without resource-level permissions: only these may use Resource "*".
RESOURCE_STAR_ALLOWED = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "cloudwatch:PutMetricData",
}


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def referenced_resource(value: Any) -> str | None:
    """The logical id behind {"Ref": X} or {"Fn::GetAtt": [X, attr]}, else None."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and isinstance(get_att[0], str):
            return get_att[0]
    return None


def function_globals(template: dict[str, Any]) -> dict[str, Any]:
    globals_: dict[str, Any] = template.get("Globals", {}).get("Function", {})
    return globals_


def effective_property(template: dict[str, Any], function: dict[str, Any], name: str) -> Any:
    """A function property as SAM resolves it: the function's own value, else the global."""
    properties = function.get("Properties", {})
    if name in properties:
        return properties[name]
    return function_globals(template).get(name)


def effective_logging_config(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    # SAM merges maps from Globals into the function's own.
    merged = dict(function_globals(template).get("LoggingConfig", {}))
    merged.update(function.get("Properties", {}).get("LoggingConfig", {}))
    return merged


def environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    merged = dict(function_globals(template).get("Environment", {}).get("Variables", {}))
    merged.update(function.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    return merged


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, SERVERLESS_FUNCTION)


def events_of_type(
    template: dict[str, Any], *types: str
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(function id, event name, event properties) for every event of the given types."""
    for function_id, function in functions(template).items():
        for event_name, event in function.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") in types:
                yield function_id, event_name, event.get("Properties", {})


def policy_statements(
    template: dict[str, Any], function_id: str, function: dict[str, Any], problems: list[str]
) -> list[dict[str, Any]]:
    """Every statement a function's Policies grant, following refs to in-template managed
    policies; anything that is not an explicit statement is reported as a problem."""
    statements: list[dict[str, Any]] = []
    resources = template["Resources"]
    for policy in as_list(function.get("Properties", {}).get("Policies")):
        if isinstance(policy, dict) and "Statement" in policy:
            statements.extend(as_list(policy["Statement"]))
            continue
        target = referenced_resource(policy)
        if target and resources.get(target, {}).get("Type") == "AWS::IAM::ManagedPolicy":
            document = resources[target]["Properties"]["PolicyDocument"]
            statements.extend(as_list(document.get("Statement")))
            continue
        problems.append(
            f"{function_id}: policy {policy!r} is a SAM policy template or an AWS managed policy; "
            "write explicit statements (inline, or an AWS::IAM::ManagedPolicy in this template)"
        )
    return statements


def resource_text(resource: Any) -> str:
    """A resource ARN as text for wildcard checks: a literal, or the template of a Fn::Sub."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        sub = resource["Fn::Sub"]
        return sub if isinstance(sub, str) else str(sub[0])
    return ""  # Ref / GetAtt of a resource in this template: a single, exact ARN.


def code_name(code_uri: Any) -> str | None:
    match = re.fullmatch(r"functions/([a-z][a-z0-9_]*)/?", str(code_uri))
    return match.group(1) if match else None


# ---------------------------------------------------------------- loader


def test_loader_turns_short_tags_into_long_form() -> None:
    # Given a template fragment written with every common short-form tag
    text = """
    AWSTemplateFormatVersion: 2010-09-09
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      Both: !And [!Condition IsProd, !Not [!Condition IsProd]]
    Outputs:
      A: {Value: !GetAtt Table.StreamArn}
      B: {Value: !GetAtt [Db, Endpoint.Address]}
      C: {Value: !GetAtt Db.Endpoint.Address}
      D: {Value: !Sub "${Table.Arn}/index/x"}
      E: {Value: !If [IsProd, !Join [",", [a, !Select [0, !GetAZs ""]]], !Ref AWS::NoValue]}
      F: {Value: !Sub [ "${X}-y", {X: !ImportValue shared}]}
    """

    # When it is parsed
    parsed = parse_template(text)

    # Then each tag has CloudFormation's long form and the date stays a string
    outputs = parsed["Outputs"]
    assert parsed["AWSTemplateFormatVersion"] == "2010-09-09"
    assert parsed["Conditions"]["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert parsed["Conditions"]["Both"] == {
        "Fn::And": [{"Condition": "IsProd"}, {"Fn::Not": [{"Condition": "IsProd"}]}]
    }
    assert outputs["A"]["Value"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert outputs["B"]["Value"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert outputs["C"]["Value"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert outputs["D"]["Value"] == {"Fn::Sub": "${Table.Arn}/index/x"}
    assert outputs["E"]["Value"] == {
        "Fn::If": [
            "IsProd",
            {"Fn::Join": [",", ["a", {"Fn::Select": [0, {"Fn::GetAZs": ""}]}]]},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert outputs["F"]["Value"] == {"Fn::Sub": ["${X}-y", {"X": {"Fn::ImportValue": "shared"}}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Resources:\n  A: {Type: X}\n  A: {Type: Y}\n", "duplicate key 'A'"),
        ("Value: !NoSuchTag x\n", "!NoSuchTag"),
        ("Value: !GetAtt NoAttribute\n", "is not Resource.Attribute"),
        ("- just a list\n", "a template is a mapping"),
    ],
)
def test_loader_rejects_what_cloudformation_rejects(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_template(text)


# ---------------------------------------------------------------- functions and packaging


def test_every_function_runs_python313_on_arm64(template: dict[str, Any]) -> None:
    globals_ = function_globals(template)
    assert globals_.get("Runtime") == "python3.13", "Globals.Function.Runtime must be python3.13"
    assert globals_.get("Architectures") == ["arm64"], "Globals.Function.Architectures: [arm64]"
    overrides = [
        f"{function_id}: overrides {name} (the layer is built for python3.13 on arm64 only)"
        for function_id, function in functions(template).items()
        for name in ("Runtime", "Architectures")
        if name in function.get("Properties", {})
    ]
    assert not overrides, "\n".join(overrides)


def test_shared_layer_is_built_for_the_runtime_and_used_by_every_function(
    template: dict[str, Any],
) -> None:
    layers = resources_of_type(template, "AWS::Serverless::LayerVersion")
    assert "CoursePayLayer" in layers, "the shared layer CoursePayLayer is missing"
    layer = layers["CoursePayLayer"]
    assert layer.get("Metadata", {}).get("BuildMethod") == "python3.13"
    assert layer.get("Metadata", {}).get("BuildArchitecture") == "arm64"
    assert layer["Properties"].get("CompatibleArchitectures") == ["arm64"]
    assert layer["Properties"].get("CompatibleRuntimes") == ["python3.13"]
    missing = [
        f"{function_id}: does not use CoursePayLayer"
        for function_id, function in functions(template).items()
        if {"Ref": "CoursePayLayer"}
        not in as_list(effective_property(template, function, "Layers"))
    ]
    assert not missing, "\n".join(missing)


def test_layer_requirements_leave_the_aws_sdk_to_the_runtime() -> None:
    requirements = (REPO / "layers" / "coursepay" / "requirements.txt").read_text(encoding="utf-8")
    names = {
        re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        for line in requirements.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    bundled = names & {"boto3", "botocore", "s3transfer"}
    assert not bundled, (
        f"layers/coursepay/requirements.txt bundles {sorted(bundled)}: the runtime provides them"
    )
    unpinned = [
        line
        for line in requirements.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "==" not in line
    ]
    assert not unpinned, f"pin every layer requirement exactly: {unpinned}"


def test_each_function_has_its_own_code_dir_and_handle_module(template: dict[str, Any]) -> None:
    problems: list[str] = []
    modules: dict[str, str] = {}
    for function_id, function in functions(template).items():
        properties = function["Properties"]
        name = code_name(properties.get("CodeUri"))
        if name is None:
            problems.append(
                f"{function_id}: CodeUri {properties.get('CodeUri')!r} is not functions/<name>/"
            )
            continue
        expected = f"handle_{name}.lambda_handler"
        if properties.get("Handler") != expected:
            problems.append(
                f"{function_id}: Handler {properties.get('Handler')!r}, expected {expected!r}"
            )
        module = str(properties.get("Handler", "")).split(".", 1)[0]
        if module in modules:
            problems.append(f"{function_id}: handler module {module} is also {modules[module]}'s")
        modules[module] = function_id
    assert not problems, "\n".join(problems)


def test_code_paths_stay_inside_the_repository(template: dict[str, Any]) -> None:
    problems = []
    for logical_id, resource in template["Resources"].items():
        for key in ("CodeUri", "ContentUri"):
            uri = resource.get("Properties", {}).get(key)
            if uri is None:
                continue
            if not isinstance(uri, str) or uri.startswith("/") or ".." in Path(uri).parts:
                problems.append(f"{logical_id}: {key} {uri!r} must be a path inside the repository")
    assert not problems, "\n".join(problems)


def test_every_function_writes_to_a_log_group_with_retention(template: dict[str, Any]) -> None:
    log_groups = resources_of_type(template, "AWS::Logs::LogGroup")
    names = {
        json.dumps(group["Properties"].get("LogGroupName"), sort_keys=True): group_id
        for group_id, group in log_groups.items()
    }
    problems = []
    for function_id, function in functions(template).items():
        group_id = referenced_resource(effective_logging_config(template, function).get("LogGroup"))
        if group_id is None:
            # Without LoggingConfig.LogGroup, Lambda writes to /aws/lambda/<FunctionName>.
            function_name = function["Properties"].get("FunctionName")
            if isinstance(function_name, dict) and isinstance(function_name.get("Fn::Sub"), str):
                expected: Any = {"Fn::Sub": "/aws/lambda/" + function_name["Fn::Sub"]}
            else:
                expected = f"/aws/lambda/{function_name}"
            group_id = names.get(json.dumps(expected, sort_keys=True))
        if group_id is None or group_id not in log_groups:
            problems.append(
                f"{function_id}: no AWS::Logs::LogGroup of its own; declare one and point "
                "LoggingConfig.LogGroup at it (or name it /aws/lambda/<FunctionName>)"
            )
    for group_id, group in log_groups.items():
        if "RetentionInDays" not in group.get("Properties", {}):
            problems.append(f"{group_id}: RetentionInDays missing (logs would be kept forever)")
    assert not problems, "\n".join(problems)


def test_a_setting_shared_by_functions_has_one_value(template: dict[str, Any]) -> None:
    seen: dict[str, dict[str, str]] = {}
    for function_id, function in functions(template).items():
        for name, value in environment(template, function).items():
            seen.setdefault(name, {})[function_id] = json.dumps(value, sort_keys=True)
    drift = [
        f"{name} differs between functions: {values}"
        for name, values in seen.items()
        if len(set(values.values())) > 1
    ]
    assert not drift, "\n".join(drift)


# ---------------------------------------------------------------- permissions


def test_function_policies_are_explicit_and_scoped(template: dict[str, Any]) -> None:
    problems: list[str] = []
    for function_id, function in functions(template).items():
        for statement in policy_statements(template, function_id, function, problems):
            where = f"{function_id} statement {statement.get('Sid', '(no Sid)')}"
            if "NotAction" in statement or "NotResource" in statement:
                problems.append(f"{where}: NotAction/NotResource grant everything else")
            actions = [str(action) for action in as_list(statement.get("Action"))]
            resources = as_list(statement.get("Resource"))
            if not actions or not resources:
                problems.append(f"{where}: needs Action and Resource")
            for action in actions:
                service = action.split(":", 1)[0].lower()
                if "*" in action and service != "xray":
                    problems.append(f"{where}: wildcard action {action!r}; list the exact actions")
            if "*" in resources:
                broad = [action for action in actions if action not in RESOURCE_STAR_ALLOWED]
                if broad:
                    problems.append(f"{where}: Resource '*' for {broad}; name the ARNs")
            for resource in resources:
                text = resource_text(resource)
                scoped = {action.split(":", 1)[0].lower() for action in actions} & SCOPED_SERVICES
                if text != "*" and "*" in text and scoped:
                    problems.append(
                        f"{where}: wildcard in resource {text!r}; name the table, index or queue"
                    )
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- event sources


def test_stream_consumers_have_bounded_retries_and_somewhere_to_fail(
    template: dict[str, Any],
) -> None:
    problems: list[str] = []
    queues = resources_of_type(template, "AWS::SQS::Queue")
    for function_id, event_name, properties in events_of_type(template, "DynamoDB", "Kinesis"):
        where = f"{function_id}.{event_name}"
        retries = properties.get("MaximumRetryAttempts")
        if not isinstance(retries, int) or retries < 0:
            problems.append(f"{where}: MaximumRetryAttempts must be set and bounded (not -1)")
        age = properties.get("MaximumRecordAgeInSeconds")
        if not isinstance(age, int) or age < 0:
            problems.append(f"{where}: MaximumRecordAgeInSeconds must be set and bounded (not -1)")
        if properties.get("BisectBatchOnFunctionError") is not True:
            problems.append(f"{where}: BisectBatchOnFunctionError must be true")
        if "ReportBatchItemFailures" not in as_list(properties.get("FunctionResponseTypes")):
            problems.append(f"{where}: FunctionResponseTypes must include ReportBatchItemFailures")
        destination = (
            properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        )
        if referenced_resource(destination) not in queues:
            problems.append(
                f"{where}: DestinationConfig.OnFailure must send to a queue of this template"
            )
        filters = as_list(properties.get("FilterCriteria", {}).get("Filters"))
        if not filters:
            problems.append(f"{where}: FilterCriteria.Filters must select the records it handles")
        for pattern in filters:
            try:
                json.loads(pattern["Pattern"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"{where}: filter {pattern!r} is not a JSON Pattern")
    assert not problems, "\n".join(problems)


def test_on_failure_destinations_are_allowed_by_the_function_role(template: dict[str, Any]) -> None:
    problems: list[str] = []
    all_functions = functions(template)
    for function_id, event_name, properties in events_of_type(template, "DynamoDB", "Kinesis"):
        destination = (
            properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        )
        queue = referenced_resource(destination)
        statements = policy_statements(template, function_id, all_functions[function_id], problems)
        allowed = any(
            "sqs:SendMessage" in as_list(statement.get("Action"))
            and any(
                referenced_resource(resource) == queue
                for resource in as_list(statement.get("Resource"))
            )
            for statement in statements
        )
        if not allowed:
            problems.append(
                f"{function_id}.{event_name}: the role needs sqs:SendMessage on {queue} for the "
                "on-failure destination"
            )
    assert not problems, "\n".join(problems)


def test_queue_consumers_report_partial_batch_failures(template: dict[str, Any]) -> None:
    problems: list[str] = []
    queues = resources_of_type(template, "AWS::SQS::Queue")
    all_functions = functions(template)
    for function_id, event_name, properties in events_of_type(template, "SQS"):
        where = f"{function_id}.{event_name}"
        if "ReportBatchItemFailures" not in as_list(properties.get("FunctionResponseTypes")):
            problems.append(f"{where}: FunctionResponseTypes must include ReportBatchItemFailures")
        queue_id = referenced_resource(properties.get("Queue"))
        if queue_id not in queues:
            problems.append(f"{where}: Queue must be a queue of this template")
            continue
        timeout = effective_property(template, all_functions[function_id], "Timeout")
        visibility = queues[queue_id]["Properties"].get("VisibilityTimeout", 30)
        if visibility < 6 * timeout:
            problems.append(
                f"{where}: {queue_id} VisibilityTimeout {visibility} s is under 6x the function's "
                f"{timeout} s timeout; messages would be redelivered while still being processed"
            )
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- queues


def dead_letter_queue_ids(template: dict[str, Any]) -> set[str]:
    """Queues some queue redrives to, and queues that declare who may redrive to them."""
    queues = resources_of_type(template, "AWS::SQS::Queue")
    targets = {
        referenced_resource(
            queue.get("Properties", {}).get("RedrivePolicy", {}).get("deadLetterTargetArn")
        )
        for queue in queues.values()
    }
    declared = {
        queue_id
        for queue_id, queue in queues.items()
        if "RedriveAllowPolicy" in queue.get("Properties", {})
    }
    return {queue_id for queue_id in targets if queue_id is not None} | declared


def test_every_work_queue_redrives_to_a_dead_letter_queue(template: dict[str, Any]) -> None:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    dlqs = dead_letter_queue_ids(template)
    problems = []
    for queue_id, queue in queues.items():
        if queue_id in dlqs:
            continue
        redrive = queue.get("Properties", {}).get("RedrivePolicy")
        if not redrive:
            problems.append(
                f"{queue_id}: no RedrivePolicy; a poison message would loop until it expires"
            )
            continue
        target = referenced_resource(redrive.get("deadLetterTargetArn"))
        if target not in queues:
            problems.append(
                f"{queue_id}: deadLetterTargetArn must be !GetAtt <a queue of this template>.Arn"
            )
        if not isinstance(redrive.get("maxReceiveCount"), int) or redrive["maxReceiveCount"] < 1:
            problems.append(f"{queue_id}: RedrivePolicy.maxReceiveCount must be a positive integer")
    assert not problems, "\n".join(problems)


def test_every_dead_letter_queue_keeps_messages_14_days(template: dict[str, Any]) -> None:
    queues = resources_of_type(template, "AWS::SQS::Queue")
    dlqs = dead_letter_queue_ids(template)
    assert dlqs, "no dead-letter queue found"
    retention = {
        queue_id: queues[queue_id]["Properties"].get("MessageRetentionPeriod") for queue_id in dlqs
    }
    problems = [
        f"{queue_id}: MessageRetentionPeriod {seconds}, expected {FOURTEEN_DAYS} (14 days, the "
        "maximum: operators need time to inspect and redrive)"
        for queue_id, seconds in sorted(retention.items())
        if seconds != FOURTEEN_DAYS
    ]
    assert not problems, "\n".join(problems)


def test_every_queue_is_encrypted(template: dict[str, Any]) -> None:
    problems = [
        f"{queue_id}: set SqsManagedSseEnabled: true (or a KmsMasterKeyId)"
        for queue_id, queue in resources_of_type(template, "AWS::SQS::Queue").items()
        if queue["Properties"].get("SqsManagedSseEnabled") is not True
        and "KmsMasterKeyId" not in queue["Properties"]
    ]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- tables


def test_every_table_is_on_demand_recoverable_and_encrypted(template: dict[str, Any]) -> None:
    problems = []
    for table_id, table in resources_of_type(template, "AWS::DynamoDB::Table").items():
        properties = table["Properties"]
        if properties.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{table_id}: BillingMode must be PAY_PER_REQUEST")
        pitr = properties.get("PointInTimeRecoverySpecification", {})
        if pitr.get("PointInTimeRecoveryEnabled") is not True:
            problems.append(f"{table_id}: PointInTimeRecoveryEnabled must be true")
        if properties.get("SSESpecification", {}).get("SSEEnabled") is not True:
            problems.append(f"{table_id}: SSESpecification.SSEEnabled must be true")
        if properties.get("DeletionProtectionEnabled") not in (
            True,
            {"Fn::If": ["IsProd", True, False]},
        ):
            problems.append(
                f"{table_id}: DeletionProtectionEnabled: !If [IsProd, true, false] (on in prod)"
            )
    assert not problems, "\n".join(problems)


def test_payments_table_streams_old_and_new_images(template: dict[str, Any]) -> None:
    table = template["Resources"]["PaymentsTable"]
    view = table["Properties"].get("StreamSpecification", {}).get("StreamViewType")
    assert view == "NEW_AND_OLD_IMAGES", (
        f"PaymentsTable stream is {view!r}: the enrolment consumer needs NEW_AND_OLD_IMAGES "
        "to see which status a payment left"
    )


# ---------------------------------------------------------------- HTTP API


def test_routes_need_a_jwt_except_the_public_ones(template: dict[str, Any]) -> None:
    apis = resources_of_type(template, "AWS::Serverless::HttpApi")
    problems: list[str] = []
    jwt_authorizers: dict[str, set[str]] = {}
    for api_id, api in apis.items():
        auth = api.get("Properties", {}).get("Auth", {})
        authorizers = auth.get("Authorizers", {})
        jwt_authorizers[api_id] = {
            name for name, config in authorizers.items() if "JwtConfiguration" in config
        }
        if auth.get("DefaultAuthorizer") not in jwt_authorizers[api_id]:
            problems.append(f"{api_id}: Auth.DefaultAuthorizer must be a JWT authorizer")

    for function_id, event_name, properties in events_of_type(template, "HttpApi"):
        where = f"{function_id}.{event_name}"
        route_api = referenced_resource(properties.get("ApiId"))
        if route_api is None or route_api not in apis:
            problems.append(
                f"{where}: ApiId must reference the template's HttpApi (without it SAM creates an "
                "implicit API with no authorizer)"
            )
            continue
        route = (str(properties.get("Method", "")).upper(), properties.get("Path"))
        authorizer = properties.get("Auth", {}).get("Authorizer")
        if route in PUBLIC_ROUTES:
            if authorizer != "NONE":
                problems.append(f"{where}: {route} is public; set Auth.Authorizer: NONE")
        elif authorizer == "NONE":
            problems.append(
                f"{where}: {route} would be public; only {sorted(PUBLIC_ROUTES)} may be"
            )
        elif authorizer is not None and authorizer not in jwt_authorizers[route_api]:
            problems.append(f"{where}: {route} uses {authorizer!r}, not a JWT authorizer")
    assert not problems, "\n".join(problems)
