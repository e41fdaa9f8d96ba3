"""LocalStack in-process, on a small template of its own: schedules, environment, shutdown.

A template written for the test keeps these checks independent of the application's
functions: the schedule trigger endpoint, the shared environment's conflict rule, the
local-only routes, and that stopping gives the process its environment back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from devstack.lambdas import EnvironmentConflict
from devstack.stack import LocalStack
from tests.support.polling import wait_until

RECORDING_HANDLER = """
import json
import os


def lambda_handler(event, context):
    with open(os.environ["RUNS_FILE"], "a") as runs:
        runs.write(json.dumps({"event": event, "function": context.function_name}) + "\\n")
    return {"checked": 0}
"""

HELLO_HANDLER = """
def lambda_handler(event, context):
    return {"hello": event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]}
"""


def write_stack(root: Path, *, conflicting: bool = False) -> Path:
    for name, source in (
        ("stacktest_sched", RECORDING_HANDLER),
        ("stacktest_hello", HELLO_HANDLER),
    ):
        (root / "functions" / name).mkdir(parents=True, exist_ok=True)
        (root / "functions" / name / f"handle_{name}.py").write_text(source)
    runs = str(root / "runs.jsonl")
    template: dict[str, Any] = {
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev"},
            "JwtIssuer": {"Type": "String"},
            "JwtAudience": {"Type": "CommaDelimitedList"},
        },
        "Globals": {"Function": {"Environment": {"Variables": {"STAGE": {"Ref": "Stage"}}}}},
        "Resources": {
            "Api": {
                "Type": "AWS::Serverless::HttpApi",
                "Properties": {
                    "Auth": {
                        "DefaultAuthorizer": "Jwt",
                        "Authorizers": {
                            "Jwt": {
                                "JwtConfiguration": {
                                    "issuer": {"Ref": "JwtIssuer"},
                                    "audience": {"Ref": "JwtAudience"},
                                }
                            }
                        },
                    }
                },
            },
            "SweepFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "FunctionName": {"Fn::Sub": "stacktest-${Stage}-sweep"},
                    "CodeUri": "functions/stacktest_sched/",
                    "Handler": "handle_stacktest_sched.lambda_handler",
                    "Environment": {"Variables": {"RUNS_FILE": runs, "SHARED": "sweep"}},
                    "Events": {
                        "Every5": {
                            "Type": "Schedule",
                            "Properties": {"Schedule": "rate(5 minutes)"},
                        }
                    },
                },
            },
            "HelloFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "functions/stacktest_hello/",
                    "Handler": "handle_stacktest_hello.lambda_handler",
                    "Environment": {"Variables": {"SHARED": "hello" if conflicting else "sweep"}},
                    "Events": {
                        "Hello": {
                            "Type": "HttpApi",
                            "Properties": {
                                "ApiId": {"Ref": "Api"},
                                "Method": "GET",
                                "Path": "/hello",
                            },
                        }
                    },
                },
            },
            "NotWrittenYetFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": "functions/not_written/",
                    "Handler": "handle_not_written.lambda_handler",
                    "Events": {
                        "Get": {
                            "Type": "HttpApi",
                            "Properties": {
                                "ApiId": {"Ref": "Api"},
                                "Method": "GET",
                                "Path": "/later",
                            },
                        }
                    },
                },
            },
        },
    }
    path = root / "template.yaml"
    path.write_text(yaml.safe_dump(template))
    return path


def local_stack(root: Path, template: Path, schedule_seconds: str = "0") -> LocalStack:
    return LocalStack(
        ports={"api": 0, "paymob": 0, "aws": 0},
        env={"DEV_SCHEDULE_SECONDS": schedule_seconds},
        root=root,
        template_path=template,
        state_dir=root / "state",
        seed=False,
    )


def runs(root: Path) -> list[dict[str, Any]]:
    path = root / "runs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_scheduled_function_runs_now_through_the_control_endpoint(tmp_path: Path) -> None:
    with local_stack(tmp_path, write_stack(tmp_path)) as stack:
        trigger = f"{stack.api_url}/_dev/schedules/SweepFunction/run"

        response = requests.post(trigger, timeout=10)
        unknown = requests.post(f"{stack.api_url}/_dev/schedules/HelloFunction/run", timeout=10)

        assert response.status_code == 200
        body = response.json()
        assert body["function"] == "SweepFunction"
        assert [(run["ok"], run["result"]) for run in body["runs"]] == [(True, {"checked": 0})]
        (run,) = runs(tmp_path)
        assert run["function"] == "stacktest-dev-sweep"
        assert run["event"]["detail-type"] == "Scheduled Event"
        assert run["event"]["resources"] == [
            "arn:aws:events:eu-west-1:123456789012:rule/course-payments-dev-SweepFunctionEvery5"
        ]
        assert unknown.status_code == 404


def test_dev_schedule_seconds_sets_the_local_period(tmp_path: Path) -> None:
    with local_stack(tmp_path, write_stack(tmp_path), schedule_seconds="0.3"):
        wait_until(lambda: len(runs(tmp_path)) >= 2, timeout=5, message="two scheduled runs")


def test_the_stack_serves_template_routes_and_skips_functions_not_written_yet(
    tmp_path: Path,
) -> None:
    before = os.environ.get("AWS_ENDPOINT_URL")
    with local_stack(tmp_path, write_stack(tmp_path)) as stack:
        token = stack.token("student-42")
        # every function's environment is in the process, the template's and the local ones
        assert os.environ["AWS_ENDPOINT_URL"] == stack.aws_url
        assert os.environ["SHARED"] == "sweep"
        assert os.environ["STAGE"] == "dev"
        assert os.environ["PUBLIC_BASE_URL"] == stack.api_url

        hello = requests.get(
            f"{stack.api_url}/hello", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        later = requests.get(
            f"{stack.api_url}/later", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        dev_token = requests.get(f"{stack.api_url}/_dev/token?sub=demo-student", timeout=10)
        with_dev_token = requests.get(
            f"{stack.api_url}/hello",
            headers={"Authorization": f"Bearer {dev_token.json()['token']}"},
            timeout=10,
        )
        jwks = requests.get(f"{stack.api_url}/_dev/jwks.json", timeout=10).json()

        assert hello.json() == {"hello": "student-42"}
        assert later.status_code == 404
        assert "NotWrittenYetFunction" in stack.skipped_functions
        assert with_dev_token.json() == {"hello": "demo-student"}
        assert stack.keys is not None
        assert jwks["keys"][0]["kid"] == stack.keys.kid
        assert stack.readiness() == {
            "aws": True,
            "gateway": True,
            "paymob": True,
            "pump:SweepFunction.Every5": True,
        }
        api_url = stack.api_url

    # Stopped: the servers are gone and the process environment is as it was
    assert os.environ.get("AWS_ENDPOINT_URL") == before
    assert "SHARED" not in os.environ
    with pytest.raises(requests.ConnectionError):
        requests.get(api_url, timeout=2)


def test_functions_that_disagree_on_a_variable_stop_the_start(tmp_path: Path) -> None:
    before = dict(os.environ)
    stack = local_stack(tmp_path, write_stack(tmp_path, conflicting=True))

    with pytest.raises(EnvironmentConflict, match="SHARED"):
        stack.start()

    assert dict(os.environ) == before
    # nothing is left running: a new stack can start in this process
    with local_stack(tmp_path, write_stack(tmp_path)) as again:
        assert again.readiness()["gateway"]
