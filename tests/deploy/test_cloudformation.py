"""infra/cloudformation/spdnas-storage.yaml: cfn-lint, a deployment into moto, and what each
role it creates may do, judged on the policies as deployed (intrinsics resolved by moto).

moto's CloudFormation applies a bucket's encryption but not its versioning, public access
block, ownership controls or lifecycle, and has no AWS::S3::BucketPolicy; those are checked
on the template itself (``test_bucket_*_in_template``) after cfn-lint has validated them
against CloudFormation's resource schemas.
"""

from __future__ import annotations

import copy
import json
import re

import boto3
import pytest
import yaml
from cfnlint.api import lint
from moto import mock_aws

from tests.deploy.conftest import AWS_CLUSTER, REGION, SSH_CIDR, TEMPLATE, deploy_stack, load_template
from tests.deploy.iam_eval import allowed_actions, is_allowed

ACCOUNT = "123456789012"  # moto's account
LINT_REGIONS = ["us-west-2", "us-east-1", "eu-central-1"]


# ---------------------------------------------------------------- lint (offline schemas)

def test_template_passes_cfn_lint():
    matches = lint(TEMPLATE.read_text(), regions=LINT_REGIONS)
    assert matches == [], "\n".join(str(m) for m in matches)


def test_cfn_lint_rejects_a_broken_variant():
    """Negative control: the lint call above does see errors in this template."""
    broken = TEMPLATE.read_text().replace("SSEAlgorithm: AES256", "SSEAlgorithm: AES128")
    assert any("AES128" in str(m) for m in lint(broken, regions=["us-west-2"]))


# ---------------------------------------------------------------- template facts

def _bucket_properties() -> dict:
    return load_template()["Resources"]["DataBucket"]["Properties"]


def test_bucket_versioning_encryption_public_access_block_in_template():
    props = _bucket_properties()
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True,
        "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    bucket = load_template()["Resources"]["DataBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"


def test_bucket_lifecycle_in_template():
    rules = [r for r in _bucket_properties()["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    experiments = [r for r in rules if r.get("Prefix") == "experiments/"]
    assert len(experiments) == 1
    assert experiments[0]["ExpirationInDays"] == {"Ref": "ExperimentRetentionDays"}
    # Nothing expires datasets/ or the bucket root as current objects.
    assert all(r.get("Prefix") == "experiments/" for r in rules if "ExpirationInDays" in r)
    tidy = [r for r in rules if "Prefix" not in r]
    noncurrent = {"NoncurrentDays": {"Ref": "NoncurrentVersionRetentionDays"}}
    assert any(r["NoncurrentVersionExpiration"] == noncurrent for r in tidy)
    assert any(r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1 for r in tidy)
    params = load_template()["Parameters"]
    for name in ("ExperimentRetentionDays", "NoncurrentVersionRetentionDays"):
        assert params[name]["Type"] == "Number" and params[name]["MinValue"] >= 1


def test_bucket_policy_denies_plain_http_in_template():
    policy = load_template()["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]
    bucket_arn = f"arn:aws:s3:::spdnas-{ACCOUNT}-{REGION}"
    resolved = json.loads(
        json.dumps(policy)
        .replace('{"Fn::GetAtt": ["DataBucket", "Arn"]}', json.dumps(bucket_arn))
        .replace('{"Fn::Sub": "${DataBucket.Arn}/*"}', json.dumps(bucket_arn + "/*"))
    )
    for statement in resolved["Statement"]:
        statement.pop("Principal")  # "*": a resource policy; evaluate it as if for any caller
    for resource in (bucket_arn, bucket_arn + "/experiments/x"):
        assert not is_allowed([resolved], "s3:GetObject", resource, {"aws:SecureTransport": "false"})
    # The policy grants nothing by itself (only denies).
    assert all(s["Effect"] == "Deny" for s in resolved["Statement"])


def test_ssh_rule_refuses_the_whole_internet():
    assertions = load_template()["Rules"]["SshCidrWithVpc"]["Assertions"]
    refused = [a["Assert"]["Fn::Not"][0]["Fn::Equals"][1] for a in assertions]
    assert "0.0.0.0/0" in refused and "" in refused


# CloudFormation matches a String parameter's AllowedPattern against the whole value (Java
# regex); this pattern uses nothing on which Python's re differs. moto does not check it.
@pytest.mark.parametrize(("cidr", "accepted"), [
    ("203.0.113.7/32", True), ("10.0.0.0/8", True), ("198.51.100.0/24", True),
    ("", True),  # the default: no security group (Kubernetes only)
    ("0.0.0.0/0", False), ("0.0.0.0/1", False), ("128.0.0.0/1", False), ("203.0.113.7/0", False),
    ("10.0.0.0/7", False), ("203.0.113.7/33", False), ("203.0.113.7", False),
])
def test_ssh_cidr_pattern_refuses_prefixes_shorter_than_8(cidr, accepted):
    parameter = load_template()["Parameters"]["SshIngressCidr"]
    assert (re.fullmatch(parameter["AllowedPattern"], cidr) is not None) == accepted
    assert parameter["Default"] == ""


def _worker_instance_types_default() -> list[str]:
    parameter = load_template()["Parameters"]["WorkerInstanceTypes"]
    assert parameter["Type"] == "CommaDelimitedList"
    return parameter["Default"].split(",")


def test_worker_instance_types_default_equals_cluster_aws_yaml():
    """The head role may launch exactly the worker types of cluster/aws.yaml: a worker type
    added there without the stack parameter would fail to launch, a stale one stays launchable."""
    cluster = yaml.safe_load(AWS_CLUSTER.read_text())
    workers = {node["node_config"]["InstanceType"]
               for name, node in cluster["available_node_types"].items()
               if name != cluster["head_node_type"]}
    default = _worker_instance_types_default()
    assert len(default) == len(set(default))
    assert set(default) == workers
    pattern = load_template()["Parameters"]["WorkerInstanceTypes"]["AllowedPattern"]
    assert all(re.fullmatch(pattern, t) for t in default)
    assert not any(re.fullmatch(pattern, t) for t in ("*", "g5.*", " g5.xlarge", ""))


# ---------------------------------------------------------------- deployed into moto

@pytest.fixture(scope="module")
def stack(aws_credentials):
    """The stack created in moto with a VPC (so the security group exists too)."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        # The template's default, passed explicitly: moto splits a CommaDelimitedList given as
        # a parameter but keeps its Default as one string (CloudFormation splits both).
        outputs = deploy_stack(boto3.client("cloudformation", region_name=REGION), "spdnas",
                               {"VpcId": vpc, "SshIngressCidr": SSH_CIDR,
                                "WorkerInstanceTypes": ",".join(_worker_instance_types_default())})
        yield {"outputs": outputs, "vpc": vpc}


def _role_policies(role_name: str) -> list[dict]:
    """Every identity policy document in force for ``role_name`` (attached + inline)."""
    iam = boto3.client("iam", region_name=REGION)
    documents = []
    for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                                VersionId=version)["PolicyVersion"]["Document"])
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        documents.append(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])
    return [json.loads(d) if isinstance(d, str) else d for d in documents]


def _role_of_profile(profile_name: str) -> dict:
    iam = boto3.client("iam", region_name=REGION)
    roles = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]["Roles"]
    assert len(roles) == 1
    return roles[0]


def test_outputs_name_the_created_resources(stack):
    out = stack["outputs"]
    bucket = f"spdnas-{ACCOUNT}-{REGION}"
    assert out["BucketName"] == bucket
    assert out["StorageUri"] == f"s3://{bucket}/experiments"
    assert out["DataUri"] == f"s3://{bucket}/datasets"
    assert out["HeadInstanceProfileName"] == "spdnas-head"
    assert out["WorkerInstanceProfileName"] == "spdnas-worker"
    assert out["WorkerInstanceProfileArn"] == f"arn:aws:iam::{ACCOUNT}:instance-profile/spdnas-worker"
    assert out["WorkerImageRepositoryUri"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/spdnas-worker"
    boto3.client("s3", region_name=REGION).head_bucket(Bucket=bucket)
    boto3.client("ec2", region_name=REGION).describe_security_groups(GroupIds=[out["ClusterSecurityGroupId"]])


def test_bucket_is_encrypted(stack):
    s3 = boto3.client("s3", region_name=REGION)
    rules = s3.get_bucket_encryption(Bucket=stack["outputs"]["BucketName"])[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_roles_are_for_ec2_only(stack):
    for profile in ("spdnas-head", "spdnas-worker"):
        trust = _role_of_profile(profile)["AssumeRolePolicyDocument"]
        trust = json.loads(trust) if isinstance(trust, str) else trust
        assert trust["Statement"] == [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                       "Action": "sts:AssumeRole"}]


def _s3_checks(policies: list[dict], bucket: str) -> None:
    """The data rights every node has, and nothing more on the bucket."""
    arn = f"arn:aws:s3:::{bucket}"
    for key in ("datasets/radar-synth/part-0.parquet", "experiments/run-1/checkpoint_000001/state.pt"):
        assert is_allowed(policies, "s3:GetObject", f"{arn}/{key}")
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        assert is_allowed(policies, action, f"{arn}/experiments/run-1/result.json")
        assert not is_allowed(policies, action, f"{arn}/datasets/radar-synth/part-0.parquet")
        assert not is_allowed(policies, action, f"{arn}/elsewhere.txt")
        assert not is_allowed(policies, action, "arn:aws:s3:::another-bucket/experiments/x")
    assert not is_allowed(policies, "s3:GetObject", f"{arn}/elsewhere.txt")
    assert not is_allowed(policies, "s3:GetObject", "arn:aws:s3:::another-bucket/datasets/x")
    # Listing, and HeadBucket (authorised as ListBucket without a prefix; Arrow sends it before
    # creating a folder, e.g. Ray's storage check of a run's experiment folder).
    for context in ({"s3:prefix": "datasets/"}, {"s3:prefix": "experiments/run-1/"}, {}):
        assert is_allowed(policies, "s3:ListBucket", arn, context)
    assert not is_allowed(policies, "s3:ListBucket", "arn:aws:s3:::another-bucket")
    for action in ("s3:DeleteBucket", "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration",
                   "s3:PutBucketVersioning", "s3:DeleteObjectVersion", "s3:GetObjectVersion",
                   "s3:PutObjectAcl"):
        for resource in (arn, f"{arn}/experiments/x"):
            assert not is_allowed(policies, action, resource)


def test_worker_role_least_privilege(stack):
    out = stack["outputs"]
    role = _role_of_profile(out["WorkerInstanceProfileName"])
    policies = _role_policies(role["RoleName"])
    _s3_checks(policies, out["BucketName"])
    repo_arn = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/spdnas-worker"
    assert is_allowed(policies, "ecr:BatchGetImage", repo_arn)
    assert not is_allowed(policies, "ecr:PutImage", repo_arn)
    assert not is_allowed(policies, "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/other")
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"
    for action in ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances"):
        assert not is_allowed(policies, action, instance, {"ec2:ResourceTag/ray-cluster-name": "spdnas"})
    assert not is_allowed(policies, "iam:PassRole", role["Arn"], {"iam:PassedToService": "ec2.amazonaws.com"})
    # Nothing else: the complete list of actions any statement allows.
    assert allowed_actions(policies) == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    }


def test_head_role_may_run_this_clusters_workers_only(stack):
    out = stack["outputs"]
    head = _role_of_profile(out["HeadInstanceProfileName"])
    worker = _role_of_profile(out["WorkerInstanceProfileName"])
    policies = _role_policies(head["RoleName"])
    _s3_checks(policies, out["BucketName"])

    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    ours = {"ec2:ResourceTag/ray-cluster-name": "spdnas"}
    theirs = {"ec2:ResourceTag/ray-cluster-name": "someone-else"}
    instance = f"{ec2}:instance/i-0123456789abcdef0"
    assert is_allowed(policies, "ec2:TerminateInstances", instance, ours)
    assert not is_allowed(policies, "ec2:TerminateInstances", instance, theirs)
    assert not is_allowed(policies, "ec2:TerminateInstances", instance, {})
    assert is_allowed(policies, "ec2:CreateTags", instance, ours)
    assert not is_allowed(policies, "ec2:CreateTags", instance, theirs)
    assert is_allowed(policies, "ec2:CreateTags", instance, {"ec2:CreateAction": "RunInstances"})
    # Launch: the instance must carry this cluster's tag (and be a worker type, see below);
    # other resources are only used.
    tagged = {"aws:RequestTag/ray-cluster-name": "spdnas", "ec2:InstanceType": "g5.xlarge"}
    assert is_allowed(policies, "ec2:RunInstances", f"{ec2}:instance/*", tagged)
    assert not is_allowed(policies, "ec2:RunInstances", f"{ec2}:instance/*", {})
    assert is_allowed(policies, "ec2:RunInstances", f"{ec2}:subnet/subnet-0abc")
    assert is_allowed(policies, "ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/ami-0abc")
    assert not is_allowed(policies, "ec2:RunInstances", f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/*", tagged)
    # The head passes the worker role to EC2, and no other role (not even its own).
    passed = {"iam:PassedToService": "ec2.amazonaws.com"}
    assert is_allowed(policies, "iam:PassRole", worker["Arn"], passed)
    assert not is_allowed(policies, "iam:PassRole", head["Arn"], passed)
    to_lambda = {"iam:PassedToService": "lambda.amazonaws.com"}
    assert not is_allowed(policies, "iam:PassRole", worker["Arn"], to_lambda)
    for action in ("iam:CreateRole", "iam:AttachRolePolicy", "ec2:AuthorizeSecurityGroupIngress",
                   "ec2:CreateSecurityGroup", "ec2:ModifyInstanceAttribute", "sts:AssumeRole"):
        assert not is_allowed(policies, action, "*")
    assert allowed_actions(policies) == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeImages", "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups", "ec2:DescribeKeyPairs", "ec2:DescribeAvailabilityZones",
        "ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "iam:PassRole",
    }


def test_head_role_launches_only_the_worker_instance_types(stack):
    policies = _role_policies(_role_of_profile(stack["outputs"]["HeadInstanceProfileName"])["RoleName"])
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"
    tag = {"aws:RequestTag/ray-cluster-name": "spdnas"}
    for instance_type in ("g5.xlarge", "g5.12xlarge"):  # gpu_1x_spot, gpu_4x
        assert is_allowed(policies, "ec2:RunInstances", instance, {**tag, "ec2:InstanceType": instance_type})
        other_tag = {"aws:RequestTag/ray-cluster-name": "someone-else", "ec2:InstanceType": instance_type}
        assert not is_allowed(policies, "ec2:RunInstances", instance, other_tag)
    # Anything else carrying the cluster tag is refused, the head's own type included.
    for instance_type in ("p4d.24xlarge", "m5.24xlarge", "g5.48xlarge", "m5.2xlarge"):
        launch = {**tag, "ec2:InstanceType": instance_type}
        assert not is_allowed(policies, "ec2:RunInstances", instance, launch)
    assert not is_allowed(policies, "ec2:RunInstances", instance, tag)  # no type in the request


def test_evaluator_catches_an_overbroad_policy(stack):
    """Negative control: widening the write statement to the whole bucket fails the checks."""
    out = stack["outputs"]
    policies = _role_policies(_role_of_profile(out["WorkerInstanceProfileName"])["RoleName"])
    widened = copy.deepcopy(policies)
    for document in widened:
        for statement in document["Statement"]:
            if "s3:PutObject" in statement["Action"]:
                statement["Resource"] = f"arn:aws:s3:::{out['BucketName']}/*"
    with pytest.raises(AssertionError):
        _s3_checks(widened, out["BucketName"])


def test_security_group_admits_ssh_from_one_cidr_and_the_cluster_only(stack):
    ec2 = boto3.client("ec2", region_name=REGION)
    group_id = stack["outputs"]["ClusterSecurityGroupId"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["VpcId"] == stack["vpc"]
    external = [p for p in group["IpPermissions"] if p["IpRanges"] or p.get("Ipv6Ranges")]
    assert external == [{**external[0], "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}]
    assert [r["CidrIp"] for r in external[0]["IpRanges"]] == [SSH_CIDR]
    internal = [p for p in group["IpPermissions"] if p["UserIdGroupPairs"]]
    assert [pair["GroupId"] for p in internal for pair in p["UserIdGroupPairs"]] == [group["GroupId"]]
    assert len(group["IpPermissions"]) == 2  # nothing else, in particular not 8265 (dashboard)


def test_stack_without_vpc_makes_no_security_group(aws_credentials):
    with mock_aws():
        outputs = deploy_stack(boto3.client("cloudformation", region_name=REGION), "spdnas-k8s",
                               {"ClusterName": "spdnas-k8s", "BucketName": "spdnas-k8s-data"})
        assert "ClusterSecurityGroupId" not in outputs
        assert outputs["BucketName"] == "spdnas-k8s-data"
        assert outputs["DataAccessPolicyArn"] == f"arn:aws:iam::{ACCOUNT}:policy/spdnas-k8s-data-access"
        groups = boto3.client("ec2", region_name=REGION).describe_security_groups()["SecurityGroups"]
        assert not [g for g in groups if g["GroupName"].startswith("spdnas-k8s")]
