"""cluster/kuberay/: KubeRay RayCluster / RayJob and the IRSA service account.

The pod templates and the ServiceAccount are validated against the Kubernetes OpenAPI
schemas shipped in the ``kubernetes-validate`` package (strict: unknown fields fail). The
KubeRay custom resources themselves are checked field by field against the structure of
the ray.io/v1 CRDs, since no schema for them ships in a package we can use offline.
"""

from __future__ import annotations

import copy
import re
import shlex

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from kubernetes_validate import utils as k8s_validate

from jobs.common import parser
from spdnas.config import load_config
from tests.deploy.conftest import DOCKERFILE, KUBERAY, REPO

# The newest Kubernetes whose schemas the installed kubernetes-validate ships.
K8S_VERSION = k8s_validate.latest_version()
JOB_MODULES = {"jobs.search", "jobs.retrain", "jobs.sweep", "jobs.benchmark"}
# Top-level fields of RayCluster.spec and RayJob.spec in ray.io/v1 (KubeRay 1.1 - 1.4, and
# authOptions {mode} from 1.6 (1.5.1 by some of Ray's docs)).
RAYCLUSTER_SPEC_FIELDS = {
    "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec", "workerGroupSpecs",
    "headServiceAnnotations", "suspend", "managedBy", "gcsFaultToleranceOptions", "authOptions",
}
RAYJOB_SPEC_FIELDS = {
    "entrypoint", "rayClusterSpec", "clusterSelector", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished",
    "submissionMode", "submitterPodTemplate", "submitterConfig", "runtimeEnvYAML", "jobId", "metadata",
    "activeDeadlineSeconds", "backoffLimit", "entrypointNumCpus", "entrypointNumGpus",
    "entrypointResources", "suspend", "managedBy", "deletionStrategy",
}
HEAD_GROUP_FIELDS = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
                       "numOfHosts", "scaleStrategy", "suspend", "idleTimeoutSeconds"}


def _load_all() -> dict[str, dict]:
    docs = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        if path.name.endswith(".local.yaml"):  # filled-in copies (README), not ours to judge
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return _load_all()


@pytest.fixture(scope="module")
def cluster_spec(manifests) -> dict:
    return manifests["RayCluster/spdnas"]["spec"]


def _pod_templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


def _validate_pod_template(template: dict) -> None:
    k8s_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                           "template": template}, K8S_VERSION, strict=True)


def test_files_hold_the_expected_objects(manifests):
    assert set(manifests) == {"RayCluster/spdnas", "RayJob/spdnas-search", "ServiceAccount/spdnas"}
    for key, doc in manifests.items():
        expected = "v1" if key.startswith("ServiceAccount/") else "ray.io/v1"
        assert doc["apiVersion"] == expected, key
        assert "namespace" not in doc["metadata"], "namespace comes from kubectl -n"


def test_pod_templates_match_the_kubernetes_schema(cluster_spec):
    for template in _pod_templates(cluster_spec):
        _validate_pod_template(template)


def test_schema_check_rejects_a_misspelt_field(cluster_spec):
    """Negative control: strict validation does catch a typo in a container."""
    template = copy.deepcopy(cluster_spec["headGroupSpec"]["template"])
    container = template["spec"]["containers"][0]
    container["resource"] = container.pop("resources")
    with pytest.raises(Exception, match="resource"):
        _validate_pod_template(template)


def test_raycluster_structure(cluster_spec):
    assert set(cluster_spec) <= RAYCLUSTER_SPEC_FIELDS
    head = cluster_spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS
    groups = cluster_spec["workerGroupSpecs"]
    assert set(head["rayStartParams"]) >= {"dashboard-host"}
    for params in [head["rayStartParams"]] + [g["rayStartParams"] for g in groups]:
        # rayStartParams is map[string]string in the CRD: a bare number or bool is refused.
        assert all(isinstance(v, str) for v in params.values()), params
    assert len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        assert set(group) <= WORKER_GROUP_FIELDS
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    assert max(g["maxReplicas"] for g in groups) >= 2
    assert cluster_spec["enableInTreeAutoscaling"] is True


def test_ray_version_matches_the_image(cluster_spec):
    image_ray = DockerfileParser(str(DOCKERFILE)).args["RAY_VERSION"]
    assert cluster_spec["rayVersion"] == image_ray


def test_containers_image_env_and_gpu_limits(cluster_spec):
    for template in _pod_templates(cluster_spec):
        container = template["spec"]["containers"][0]
        assert container["image"] == "REPLACE_ME_IMAGE"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["SPDNAS_STORAGE"] == "s3://REPLACE_ME_BUCKET/experiments"
        assert env["SPDNAS_DATA"] == "s3://REPLACE_ME_BUCKET/datasets"
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"], "boto3 reads only AWS_DEFAULT_REGION"
        assert not [k for k in env if re.search("SECRET|ACCESS_KEY|TOKEN|PASSWORD", k)]
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        assert template["spec"]["serviceAccountName"] == "spdnas"
    head = cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    for group in cluster_spec["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, group["groupName"]


def test_ray_token_authentication_is_on(cluster_spec):
    """Other pods of the Kubernetes cluster reach the Ray ports (ClusterIP, no NetworkPolicy):
    without a token they could submit jobs as the spdnas service account."""
    assert cluster_spec["authOptions"] == {"mode": "token"}


def test_gpu_worker_pods_fit_the_one_gpu_node_of_the_aws_cluster(cluster_spec):
    """A pod asking more than a g5.xlarge holds (after the kubelet's share) stays Pending."""
    aws = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    node = next(n for n in aws["available_node_types"].values() if n["resources"].get("GPU") == 1)
    assert node["node_config"]["InstanceType"] == "g5.xlarge"  # 4 vCPUs, 16 GiB
    for group in cluster_spec["workerGroupSpecs"]:
        requests = group["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert float(requests["cpu"]) <= node["resources"]["CPU"] - 0.5, group["groupName"]
        assert int(requests["memory"].removesuffix("Gi")) <= 16 - 2, group["groupName"]


def test_nothing_is_exposed_outside_the_cluster(manifests, cluster_spec):
    assert cluster_spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert not cluster_spec["headGroupSpec"].get("enableIngress", False)
    assert not [k for k in manifests if k.split("/")[0] in {"Ingress", "Service", "Route"}]
    for template in _pod_templates(cluster_spec):
        for container in template["spec"]["containers"]:
            assert not [p for p in container.get("ports", []) if "hostPort" in p]
        assert not template["spec"].get("hostNetwork", False)


def test_service_account_uses_irsa(manifests):
    account = manifests["ServiceAccount/spdnas"]
    role_arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::REPLACE_ME_ACCOUNT_ID:role/[\w+=,.@-]+", role_arn)
    k8s_validate.validate(account, K8S_VERSION, strict=True)


def test_rayjob_runs_a_job_entrypoint_on_the_same_cluster_spec(manifests, cluster_spec):
    job = manifests["RayJob/spdnas-search"]["spec"]
    assert set(job) <= RAYJOB_SPEC_FIELDS
    assert job["rayClusterSpec"] == cluster_spec, "rayjob.yaml drifted from raycluster.yaml"
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["python", "-m"] and argv[2] in JOB_MODULES
    args = parser("x").parse_args(argv[3:])
    assert args.config.startswith("/home/ray/spdnas/configs/") and args.config.endswith(".yaml")
    # The entrypoint's config and overrides load, and its workers use the GPU group's GPUs.
    config = load_config(str(REPO / args.config.removeprefix("/home/ray/spdnas/")), args.overrides)
    assert config.distributed.use_gpu
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    assert job["submissionMode"] in {"K8sJobMode", "HTTPMode", "SidecarMode"}
