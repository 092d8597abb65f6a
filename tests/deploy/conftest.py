"""Fixtures for the deployment tests: paths, and the CloudFormation stack deployed into moto.

Everything here is offline: moto answers the AWS calls in-process, with dummy credentials
that exist only inside these fixtures.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "cloudformation" / "spdnas-storage.yaml"
AWS_CLUSTER = REPO / "cluster" / "aws.yaml"
LOCAL_CLUSTER = REPO / "cluster" / "local.yaml"
KUBERAY = REPO / "cluster" / "kuberay"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
REGION = "us-west-2"
SSH_CIDR = "203.0.113.7/32"  # a documentation address


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (``!Ref x`` -> ``{"Ref": "x"}``)."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template() -> dict:
    """The CloudFormation template as plain data, intrinsic functions in long form."""
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


@pytest.fixture(scope="module")
def aws_credentials() -> Iterator[None]:
    """Dummy credentials and region for moto; real AWS settings are masked for the module."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN",
                     "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        yield


def deploy_stack(cloudformation, stack_name: str, parameters: dict[str, str]) -> dict[str, str]:
    """Create the stack from the template with ``parameters``; return its outputs."""
    with warnings.catch_warnings():
        # moto's CloudFormation has no AWS::S3::BucketPolicy and says so; the bucket policy
        # is checked on the template instead (test_cloudformation.py).
        warnings.filterwarnings("ignore", message=".*AWS::S3::BucketPolicy.*")
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=TEMPLATE.read_text(),
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
