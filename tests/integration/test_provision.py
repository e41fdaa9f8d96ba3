"""devstack.provision: the local AWS holds what template.yaml declares, named and wired alike."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from devstack.provision import (
    ProvisioningError,
    function_environment,
    provision,
)
from devstack.template import parse_template, resources_of_type
from tests.support.aws import PARAMETERS, REGION, STAGE, AwsStack, stack_template


def resolved_names(template: dict[str, Any], resource_type: str, name_property: str) -> set[str]:
    """The names the template gives, with ${Stage} filled in as CloudFormation would."""
    names = set()
    for resource in resources_of_type(template, resource_type).values():
        expression = resource["Properties"][name_property]["Fn::Sub"]
        names.add(expression.replace("${Stage}", STAGE))
    return names


# --- what template.yaml declares exists -------------------------------------------------------


def test_every_table_of_the_template_exists_with_its_keys_indexes_and_stream(
    aws: AwsStack,
) -> None:
    # Given the stack provisioned from template.yaml
    template = stack_template()

    # Then every table exists under its template name, shaped as the template says
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    assert set(aws.dynamodb.list_tables()["TableNames"]) == resolved_names(
        template, "AWS::DynamoDB::Table", "TableName"
    )
    for logical_id, resource in tables.items():
        declared = resource["Properties"]
        table = aws.dynamodb.describe_table(TableName=aws.resources[logical_id])["Table"]
        assert table["KeySchema"] == declared["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(
            declared["AttributeDefinitions"], key=str
        )
        assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
        assert {
            index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
            for index in table.get("GlobalSecondaryIndexes", [])
        } == {
            index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"])
            for index in declared.get("GlobalSecondaryIndexes", [])
        }
        stream = declared.get("StreamSpecification")
        assert table.get("StreamSpecification", {}).get("StreamViewType") == (
            stream["StreamViewType"] if stream else None
        )


def test_the_payments_stream_is_there_to_read(aws: AwsStack) -> None:
    # The enrolment pump reads the payments stream: it must exist with old and new images
    stream_arn = aws.resources.get_att("PaymentsTable", "StreamArn")
    # botocore sends stream calls to an account endpoint (<account>.streams-ddb...) that
    # in-process moto 5.2.5 does not serve; the classic endpoint reaches it.
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
    assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_every_queue_exists_and_the_retry_queue_dead_letters_to_its_dlq(aws: AwsStack) -> None:
    # Given the stack provisioned from template.yaml
    template = stack_template()
    declared = resources_of_type(template, "AWS::SQS::Queue")

    # Then every queue exists under its template name
    urls = aws.sqs.list_queues()["QueueUrls"]
    assert {url.rsplit("/", 1)[1] for url in urls} == resolved_names(
        template, "AWS::SQS::Queue", "QueueName"
    )
    # And each has the template's timeouts and retention
    for logical_id, resource in declared.items():
        attributes = aws.sqs.get_queue_attributes(
            QueueUrl=aws.resources[logical_id], AttributeNames=["All"]
        )["Attributes"]
        for name in ("VisibilityTimeout", "MessageRetentionPeriod"):
            if name in resource["Properties"]:
                assert attributes[name] == str(resource["Properties"][name])
    # And the retry queue's redrive policy names the DLQ's ARN
    retry = aws.sqs.get_queue_attributes(
        QueueUrl=aws.resources["RetryQueue"], AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(retry["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == aws.resources.get_att("RetryDeadLetterQueue", "Arn")
    expected = declared["RetryQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    assert int(policy["maxReceiveCount"]) == expected


def test_a_message_received_too_often_moves_to_the_dlq(aws: AwsStack) -> None:
    # Given a message on the retry queue
    retry, dlq = aws.resources["RetryQueue"], aws.resources["RetryDeadLetterQueue"]
    aws.sqs.send_message(QueueUrl=retry, MessageBody="{}")
    max_receives = json.loads(
        aws.sqs.get_queue_attributes(QueueUrl=retry, AttributeNames=["RedrivePolicy"])[
            "Attributes"
        ]["RedrivePolicy"]
    )["maxReceiveCount"]

    # When it is received and never deleted, as many times as the policy allows
    for _ in range(int(max_receives)):
        received = aws.sqs.receive_message(QueueUrl=retry, VisibilityTimeout=0)
        assert received.get("Messages")

    # Then the next receive finds it on the DLQ instead
    assert not aws.sqs.receive_message(QueueUrl=retry, VisibilityTimeout=0).get("Messages")
    assert aws.sqs.receive_message(QueueUrl=dlq).get("Messages")


def test_the_event_bus_and_the_alarm_topic_exist(aws: AwsStack) -> None:
    template = stack_template()
    buses = {bus["Name"] for bus in aws.events.list_event_buses()["EventBuses"]}
    assert resolved_names(template, "AWS::Events::EventBus", "Name") <= buses
    topics = {topic["TopicArn"].rsplit(":", 1)[1] for topic in aws.sns.list_topics()["Topics"]}
    assert topics == resolved_names(template, "AWS::SNS::Topic", "TopicName")
    assert aws.resources["AlarmTopic"] == aws.resources.get_att("AlarmTopic", "TopicArn")


def test_provisioning_again_reuses_what_exists(aws: AwsStack) -> None:
    # Given a provisioned stack (a local stack restarted against a running emulator)
    # When it is provisioned again
    again = provision(stack_template(), stage=STAGE, parameters=PARAMETERS)

    # Then the same resources are returned and nothing is duplicated
    assert dict(again) == dict(aws.resources)
    assert len(aws.sqs.list_queues()["QueueUrls"]) == len(
        resources_of_type(stack_template(), "AWS::SQS::Queue")
    )


def test_a_table_that_drifted_from_the_template_is_refused(aws: AwsStack) -> None:
    # Given the template now projects by-student differently from the existing table
    changed = copy.deepcopy(stack_template())
    indexes = changed["Resources"]["PaymentsTable"]["Properties"]["GlobalSecondaryIndexes"]
    for index in indexes:
        if index["IndexName"] == "by-student":
            index["Projection"] = {"ProjectionType": "KEYS_ONLY"}

    # When it is provisioned over the existing stack
    # Then provisioning says the emulator needs a reset instead of using the old table
    with pytest.raises(ProvisioningError, match="reset"):
        provision(changed, stage=STAGE, parameters=PARAMETERS)


def test_unemulated_resources_are_skipped_with_one_line_each(
    aws: AwsStack, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the template's functions, policies, log groups, alarms and keys
    unemulated = {
        logical_id
        for logical_id, resource in stack_template()["Resources"].items()
        if resource["Type"]
        not in {
            "AWS::DynamoDB::Table",
            "AWS::SQS::Queue",
            "AWS::Events::EventBus",
            "AWS::SNS::Topic",
            "AWS::SecretsManager::Secret",
        }
    }

    # When the stack is provisioned
    with caplog.at_level(logging.INFO, logger="devstack.provision"):
        provision(stack_template(), stage=STAGE, parameters=PARAMETERS)

    # Then each is skipped with one log line, and none is an error
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped")]
    assert len(skipped) == len(unemulated)
    assert {line.split()[1] for line in skipped} == unemulated


# --- a function's environment ------------------------------------------------------------------


def test_a_functions_environment_resolves_globals_and_its_own_variables(aws: AwsStack) -> None:
    # Given the retry function (Globals plus the retry queue, the bus and PayMob's settings)
    declared = stack_template()["Resources"]["RetryFunction"]["Properties"]["Environment"]

    # When its environment is resolved
    environment = aws.environment("RetryFunction")

    # Then tables are names, queues URLs, buses names, parameters and conditions applied
    global_variables = stack_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert set(environment) == set(global_variables) | set(declared["Variables"])
    table_variables = {
        name: expression["Ref"]
        for name, expression in global_variables.items()
        if isinstance(expression, dict) and expression.get("Ref", "").endswith("Table")
    }
    assert len(table_variables) == 4
    for name, logical_id in table_variables.items():
        assert environment[name] == aws.resources[logical_id]
    assert environment["RETRY_QUEUE_URL"] == aws.resources["RetryQueue"]
    assert environment["EVENT_BUS_NAME"] == f"course-payments-{STAGE}"
    assert environment["STAGE"] == STAGE
    assert environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"  # !If [IsDev, DEBUG, INFO]


def test_a_functions_environment_takes_parameters_and_overrides(aws: AwsStack) -> None:
    # When the webhook's environment is resolved with a local override
    environment = aws.environment("WebhookFunction", PAYMOB_SECRET_NAME="local/paymob")

    # Then parameters come from what provisioning was given, overrides replace variables
    assert environment["PAYMOB_INTEGRATION_IDS"] == PARAMETERS["PaymobIntegrationIds"]
    assert environment["PAYMOB_SECRET_NAME"] == "local/paymob"
    # And without the override the template's fallback expression applies
    assert aws.environment("WebhookFunction")["PAYMOB_SECRET_NAME"] == (
        f"course-payments/{STAGE}/paymob"
    )


def test_an_unknown_function_or_a_missing_parameter_is_a_clear_error(aws: AwsStack) -> None:
    with pytest.raises(ProvisioningError, match="NoSuchFunction"):
        aws.environment("NoSuchFunction")
    without_integrations = provision(
        stack_template(),
        stage=STAGE,
        parameters={k: v for k, v in PARAMETERS.items() if k != "PaymobIntegrationIds"},
    )
    with pytest.raises(ProvisioningError, match="PaymobIntegrationIds"):
        function_environment(stack_template(), "WebhookFunction", without_integrations)


def test_parameters_are_checked_as_cloudformation_checks_them(aws: AwsStack) -> None:
    with pytest.raises(ProvisioningError, match="Stage"):
        provision(stack_template(), stage="qa", parameters=PARAMETERS)
    with pytest.raises(ProvisioningError, match="PaymobBaseUrl"):
        provision(
            stack_template(),
            stage=STAGE,
            parameters={**PARAMETERS, "PaymobBaseUrl": "https://evil.example.com"},
        )
    with pytest.raises(ProvisioningError, match="NoSuchParameter"):
        provision(stack_template(), stage=STAGE, parameters={"NoSuchParameter": "x"})


# --- what template.yaml does not use (yet) ----------------------------------------------------

SYNTHETIC = """
Parameters:
  Stage: {Type: String, Default: dev}
  Tier: {Type: String, Default: small}
Mappings:
  Sizes:
    small: {Visibility: 45}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  Unnamed:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PROVISIONED
      ProvisionedThroughput: {ReadCapacityUnits: 2, WriteCapacityUnits: 2}
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      TimeToLiveSpecification: {AttributeName: expires, Enabled: true}
  Ordered:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      VisibilityTimeout: !FindInMap [Sizes, !Ref Tier, Visibility]
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt OrderedDlq.Arn
        maxReceiveCount: 3
  OrderedDlq:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
  ProdOnly:
    Type: AWS::SNS::Topic
    Condition: IsProd
  Credentials:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Join ["/", [!Ref "AWS::StackName", paymob]]
      GenerateSecretString:
        SecretStringTemplate: '{"api_key": "local"}'
        GenerateStringKey: hmac_secret
        PasswordLength: 24
        ExcludePunctuation: true
"""


@pytest.mark.usefixtures("aws_environment")
def test_defaults_conditions_mappings_fifo_queues_and_generated_secrets() -> None:
    # Given a template with no explicit names, a mapping, a false condition and a secret
    template = parse_template(SYNTHETIC)

    with mock_aws():
        # When it is provisioned
        resources = provision(template, stage="dev")

        # Then unnamed resources get deterministic stack-prefixed names
        assert resources["Unnamed"] == "course-payments-dev-Unnamed"
        sqs = boto3.client("sqs", region_name=REGION)
        assert resources.get_att("Ordered", "QueueName") == "course-payments-dev-Ordered.fifo"
        attributes = sqs.get_queue_attributes(
            QueueUrl=resources["Ordered"], AttributeNames=["All"]
        )["Attributes"]
        assert attributes["VisibilityTimeout"] == "45"
        assert json.loads(attributes["RedrivePolicy"])["deadLetterTargetArn"] == (
            resources.get_att("OrderedDlq", "Arn")
        )
        # And the conditional topic is skipped
        assert "ProdOnly" not in resources
        # And the secret holds its template with a generated value
        secret = boto3.client("secretsmanager", region_name=REGION).get_secret_value(
            SecretId="course-payments-dev/paymob"
        )
        value = json.loads(secret["SecretString"])
        assert value["api_key"] == "local"
        assert len(value["hmac_secret"]) == 24
        assert value["hmac_secret"].isalnum()
        assert resources["Credentials"] == secret["ARN"]
        ttl = boto3.client("dynamodb", region_name=REGION).describe_time_to_live(
            TableName="course-payments-dev-Unnamed"
        )
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires"


@pytest.mark.usefixtures("aws_environment")
def test_provisioning_reaches_a_moto_server_through_aws_endpoint_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a moto server on loopback, and AWS_ENDPOINT_URL pointing at it (as `make dev` does)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")

        # When the stack is provisioned with default clients
        resources = provision(stack_template(), stage=STAGE, parameters=PARAMETERS)

        # Then the server holds the tables and the queues, named as in the template
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        assert set(dynamodb.list_tables()["TableNames"]) == resolved_names(
            stack_template(), "AWS::DynamoDB::Table", "TableName"
        )
        assert resources["RetryQueue"].startswith(f"http://{host}:{port}/")
    finally:
        server.stop()
