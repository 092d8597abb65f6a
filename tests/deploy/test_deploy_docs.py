"""The README's cluster walk-through agrees with the files it drives, the Quick start is
untouched, and no deployment file carries a credential."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.deploy.conftest import AWS_CLUSTER, KUBERAY, REPO, load_template

README = (REPO / "README.md").read_text()


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def _commands(section: str) -> str:
    """The shell code of a section, line continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return re.sub(r" *\\\n\s*", " ", "\n".join(blocks))


def _placeholders(path) -> set[str]:
    return set(re.findall(r"REPLACE_ME_[A-Z]+(?:_[A-Z]+)*", path.read_text()))


def test_quick_start_still_holds_exactly_two_commands():
    block = re.search(r"```bash\n(.*?)```", _section(README, "Quick start"), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_walkthrough_covers_launch_submit_watch_download_teardown():
    shell = _commands(_section(README, "Running on a cluster"))
    for needed in (
        "aws cloudformation deploy --stack-name spdnas "
        "--template-file infra/cloudformation/spdnas-storage.yaml",
        "docker build -f infra/docker/Dockerfile",
        "ray up cluster/aws.local.yaml",
        "ray dashboard cluster/aws.local.yaml",
        "ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env jobs/runtime_env.yaml "
        "-- python -m jobs.search --config configs/radar.yaml",
        "aws s3 sync",
        "ray down cluster/aws.local.yaml",
        "kubectl -n spdnas port-forward svc/spdnas-head-svc 8265:8265",
        "ray up cluster/local.yaml",
        "ray down cluster/local.yaml",
    ):
        assert needed in shell, needed


def test_cluster_jobs_use_gpus_and_find_their_dataset():
    """Every job the walk-through submits parses, uses the GPU nodes on AWS/EKS, and the dataset
    it reads is written to S3 (nodes may not write datasets/) before the first submission."""
    from jobs.common import parser

    section = _section(README, "Running on a cluster")
    shell = _commands(section)
    submits = [line for line in shell.splitlines() if line.startswith("ray job submit")]
    assert len(submits) == 3
    for line in submits:
        assert "--runtime-env jobs/runtime_env.yaml --" in line
        argv = shlex.split(line.split(" -- ", 1)[1])
        assert argv[:3] == ["python", "-m", "jobs.search"]
        args = parser("x").parse_args(argv[3:])
        assert (REPO / args.config).is_file()
    aws, eks = submits[:2]
    assert "distributed.use_gpu=true" in aws and "distributed.use_gpu=true" in eks
    prepare = shell.index("python -m jobs.prepare_data --dataset radar-synth "
                          '--out "s3://$(out BucketName)/datasets/radar-synth"')
    assert prepare < shell.index(aws)


def test_every_placeholder_is_filled_by_the_readme():
    shell = _commands(_section(README, "Running on a cluster"))
    filled = set(re.findall(r"s\|(REPLACE_ME_[A-Z_]+)\|", shell))
    manifests = [f for f in KUBERAY.glob("*.yaml") if not f.name.endswith(".local.yaml")]
    used = _placeholders(AWS_CLUSTER).union(*(_placeholders(f) for f in manifests))
    assert used == filled and len(used) >= 4
    cluster_readme = (REPO / "cluster" / "README.md").read_text()
    assert all(p in cluster_readme for p in used)


def test_stack_outputs_named_in_the_readme_exist():
    outputs = set(load_template()["Outputs"])
    named = set(re.findall(r"\$\(out (\w+)\)", README))
    assert named and named <= outputs


def test_paths_named_in_the_readme_exist():
    named = re.findall(r"\b((?:cluster|infra)/[\w./-]+\.(?:yaml|md)|infra/docker/Dockerfile)\b", README)
    assert len(set(named)) >= 5
    for path in set(named):
        if ".local." in path:
            continue
        assert (REPO / path).exists(), path


def _deployment_files():
    roots = [REPO / "cluster", REPO / "infra", REPO / "jobs", REPO / "configs"]
    files = [p for root in roots for p in root.rglob("*") if p.is_file() and ".local." not in p.name]
    return [*files, REPO / ".dockerignore", REPO / "README.md"]


@pytest.mark.parametrize("pattern", [
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",                 # AWS access key ids
    r"aws_secret_access_key\s*[=:]",                 # a secret being assigned
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",           # key material
    r"(?i)(password|secret|token)\s*[:=]\s*(?![~/])\S{8,}",  # inline secrets (not a file's path)
])
def test_no_credentials_in_deployment_files(pattern):
    offenders = [str(p.relative_to(REPO)) for p in _deployment_files() if re.search(pattern, p.read_text())]
    assert offenders == []
