"""cluster/aws.yaml and cluster/local.yaml: Ray's own offline validation, the fields the
deployment relies on, and the AWS launch path run against moto (no network, no Ray processes).
"""

from __future__ import annotations

import re
import shlex

import boto3
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from jsonschema import ValidationError
from moto import mock_aws
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.deploy.conftest import (
    AWS_CLUSTER,
    DOCKERFILE,
    LOCAL_CLUSTER,
    REGION,
    REPO,
    SSH_CIDR,
    deploy_stack,
    load_template,
)

PLACEHOLDERS = {"REPLACE_ME_BUCKET", "REPLACE_ME_IMAGE", "REPLACE_ME_SECURITY_GROUP", "REPLACE_ME_AMI"}


def _load(path) -> dict:
    return yaml.safe_load(path.read_text())


def _prepared(path) -> dict:
    config = prepare_config(_load(path))
    validate_config(config)
    return config


def _aws_workers(config: dict) -> dict:
    return {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}


def _fill(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


@pytest.mark.parametrize("path", [AWS_CLUSTER, LOCAL_CLUSTER], ids=["aws", "local"])
def test_passes_ray_validation(path):
    config = _prepared(path)
    assert config["available_node_types"]


def test_ray_validation_rejects_broken_configs():
    """Negative control: the validation used above does reject bad configs."""
    typo = _load(AWS_CLUSTER)
    typo["max_worker"] = typo.pop("max_workers")
    with pytest.raises(ValidationError):
        validate_config(prepare_config(typo))
    too_many = _load(AWS_CLUSTER)
    too_many["available_node_types"]["gpu_4x"]["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(too_many))


def test_aws_placeholders_are_the_documented_four():
    assert set(re.findall(r"REPLACE_ME_[A-Z_]+", AWS_CLUSTER.read_text())) == PLACEHOLDERS


def test_aws_gpu_workers_autoscale_within_bounds():
    config = _prepared(AWS_CLUSTER)
    workers = _aws_workers(config)
    assert len(workers) >= 2
    for name, node in workers.items():
        assert node["resources"].get("GPU", 0) >= 1, name
        assert re.match(r"^(g|p)\d", node["node_config"]["InstanceType"]), name
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"], name
    assert sum(n["min_workers"] for n in workers.values()) <= config["max_workers"]
    assert max(n["max_workers"] for n in workers.values()) >= 2, "the cluster can actually scale out"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert head["max_workers"] == 0


def test_aws_spot_and_on_demand_gpu_types():
    config = _prepared(AWS_CLUSTER)
    workers = _aws_workers(config)
    market = {name: node["node_config"].get("InstanceMarketOptions", {}).get("MarketType")
              for name, node in workers.items()}
    spot = [n for n, m in market.items() if m == "spot"]
    on_demand = [n for n, t in workers.items() if "InstanceMarketOptions" not in t["node_config"]]
    assert spot and on_demand
    head = config["available_node_types"][config["head_node_type"]]
    assert "InstanceMarketOptions" not in head["node_config"], "the head must not be reclaimed"
    assert config["provider"]["cache_stopped_nodes"] is False


def test_aws_instance_profiles_are_the_stacks():
    config = _prepared(AWS_CLUSTER)
    template = load_template()
    cluster_name = template["Parameters"]["ClusterName"]["Default"]
    assert config["cluster_name"] == cluster_name

    def profile_name(logical_id: str) -> str:
        sub = template["Resources"][logical_id]["Properties"]["InstanceProfileName"]["Fn::Sub"]
        return sub.replace("${ClusterName}", cluster_name)

    head_type = config["head_node_type"]
    for name, node in config["available_node_types"].items():
        expected = profile_name("HeadInstanceProfile" if name == head_type else "WorkerInstanceProfile")
        assert node["node_config"]["IamInstanceProfile"] == {"Name": expected}, name


def test_aws_image_and_storage_environment():
    config = _prepared(AWS_CLUSTER)
    assert config["docker"]["image"] == "REPLACE_ME_IMAGE"
    env = dict(opt.split(" ", 1)[1].split("=", 1) for opt in config["docker"]["run_options"]
               if opt.startswith("--env "))
    assert env["SPDNAS_STORAGE"] == "s3://REPLACE_ME_BUCKET/experiments"
    assert env["SPDNAS_DATA"] == "s3://REPLACE_ME_BUCKET/datasets"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == config["provider"]["region"]
    assert not any(k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION")) for k in env)
    assert any("import spdnas" in c for c in config["setup_commands"]), "fail fast on a wrong image"
    init = config["initialization_commands"]
    assert any("docker login" in c and "ecr get-login-password" in c for c in init)
    for node in config["available_node_types"].values():
        assert node["node_config"]["ImageId"] == "REPLACE_ME_AMI"
        assert node["node_config"]["MetadataOptions"]["HttpTokens"] == "required"
        assert all(d["Ebs"]["Encrypted"] for d in node["node_config"]["BlockDeviceMappings"])


def _ray_start_args(commands: list[str], head: bool) -> list[str]:
    starts = [shlex.split(c.split("ray start", 1)[1]) for c in commands if "ray start" in c]
    assert len(starts) == 1
    assert ("--head" in starts[0]) == head
    return starts[0]


@pytest.mark.parametrize("path", [AWS_CLUSTER, LOCAL_CLUSTER], ids=["aws", "local"])
def test_dashboard_listens_on_loopback_only(path):
    config = _prepared(path)
    args = _ray_start_args(config["head_start_ray_commands"], head=True)
    assert "--dashboard-host=127.0.0.1" in args
    _ray_start_args(config["worker_start_ray_commands"], head=False)
    assert "0.0.0.0" not in path.read_text()


@pytest.mark.parametrize("path", [AWS_CLUSTER, LOCAL_CLUSTER], ids=["aws", "local"])
def test_ray_token_authentication_is_on_every_node(path):
    """Without it each node's dashboard agent (port 52365, on the node's address whatever
    --dashboard-host says) takes job submissions from anyone who reaches it."""
    config = _prepared(path)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token", "Ray's default token path"
    if config.get("docker", {}).get("image"):
        assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    else:
        for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
            start = next(c for c in commands if "ray start" in c)
            assert re.search(r"\bexport\b[^;]*\bRAY_AUTH_MODE=token\b[^;]*;", start), start


def test_aws_nodes_use_the_stacks_security_group():
    """With SecurityGroupIds on every node type Ray creates no group of its own (its default
    admits SSH from 0.0.0.0/0); the stack's group is checked in test_cloudformation.py."""
    config = _prepared(AWS_CLUSTER)
    for name, node in config["available_node_types"].items():
        assert node["node_config"]["SecurityGroupIds"] == ["REPLACE_ME_SECURITY_GROUP"], name
    assert "security_group" not in config["provider"]


def test_local_cluster_installs_the_package_and_sets_storage():
    config = _prepared(LOCAL_CLUSTER)
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    assert not config["auth"]["ssh_private_key"].count("PRIVATE KEY"), "a path, never a key"
    setup = config["setup_commands"]
    torch_step = next(i for i, c in enumerate(setup) if re.search(r"pip install .*torch==", c))
    package_step = next(i for i, c in enumerate(setup) if re.search(r"pip install .* \.$", c.strip()))
    assert torch_step < package_step
    image_ray = DockerfileParser(str(DOCKERFILE)).args["RAY_VERSION"]
    assert f'"ray[default,train,tune,data]=={image_ray}"' in setup[package_step], "the image's Ray"
    makefile = (REPO / "Makefile").read_text()
    torch_pin = re.search(r"^TORCH_SPEC \?= (torch==\S+)$", makefile, re.M).group(1)
    assert f'"{torch_pin}"' in setup[torch_step], "the same torch as the Makefile"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = next(c for c in commands if "ray start" in c)
        assert "SPDNAS_STORAGE=" in start and "SPDNAS_DATA=" in start


def test_aws_launch_path_against_moto(aws_credentials, tmp_path, monkeypatch):
    """Deploy the stack into moto, fill the placeholders from its outputs as the README does,
    then run Ray's own AWS bootstrap and node provider: the launched instances carry the
    stack's profiles and security group, this cluster's tag, and spot pricing where asked."""
    from ray.autoscaler._private.aws import config as ray_aws_config
    from ray.autoscaler._private.aws.node_provider import AWSNodeProvider

    monkeypatch.setenv("HOME", str(tmp_path))  # Ray writes its generated SSH key under ~/.ssh
    ray_aws_config._get_subnets_or_die.cache_clear()
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        outputs = deploy_stack(boto3.client("cloudformation", region_name=REGION), "spdnas",
                               {"VpcId": vpc, "SshIngressCidr": SSH_CIDR})
        ami = ec2.describe_images()["Images"][0]["ImageId"]
        text = _fill(AWS_CLUSTER.read_text(), {
            "REPLACE_ME_BUCKET": outputs["BucketName"],
            "REPLACE_ME_IMAGE": outputs["WorkerImageRepositoryUri"] + ":0.1.0",
            "REPLACE_ME_SECURITY_GROUP": outputs["ClusterSecurityGroupId"],
            "REPLACE_ME_AMI": ami,
        })
        assert not re.search(r"REPLACE_ME_[A-Z]", text)
        config = prepare_config(yaml.safe_load(text))
        validate_config(config)
        # ECR login reads registry and region from the image name.
        registry = outputs["WorkerImageRepositoryUri"].split("/")[0]
        assert registry.split(".")[3] == REGION

        config = ray_aws_config.bootstrap_aws(config)
        provider = AWSNodeProvider(config["provider"], config["cluster_name"])
        launched = {}
        for node_type in ("head", "gpu_1x_spot", "gpu_4x"):
            before = set(provider.non_terminated_nodes({}))
            provider.create_node(config["available_node_types"][node_type]["node_config"],
                                 {"ray-user-node-type": node_type}, 1)
            (launched[node_type],) = set(provider.non_terminated_nodes({})) - before

        reservations = ec2.describe_instances()["Reservations"]
        instances = {i["InstanceId"]: i for r in reservations for i in r["Instances"]}
        for node_type, instance_id in launched.items():
            instance = instances[instance_id]
            profile = outputs["HeadInstanceProfileArn" if node_type == "head" else "WorkerInstanceProfileArn"]
            assert instance["IamInstanceProfile"]["Arn"] == profile, node_type
            assert [g["GroupId"] for g in instance["SecurityGroups"]] == [outputs["ClusterSecurityGroupId"]]
            tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
            assert tags["ray-cluster-name"] == "spdnas"
            assert (instance.get("InstanceLifecycle") == "spot") == (node_type == "gpu_1x_spot"), node_type
        assert instances[launched["gpu_4x"]]["InstanceType"] == "g5.12xlarge"
