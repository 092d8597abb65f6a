"""Every S3 request a cluster node makes during a real run is one the nodes' IAM policy allows.

A moto server records every request while a search runs through Ray Train with its dataset
and its storage in S3 (Ray Data reads, Ray Train's storage check and checkpoint uploads, our
own outputs, and a restart with ``--no-resume`` that deletes the earlier run). Each request is
mapped to the IAM action S3 authorises it as (a ``HeadBucket`` is ``s3:ListBucket`` with no
prefix) and judged against the node policy of ``infra/cloudformation/spdnas-storage.yaml``.
moto itself enforces no IAM, so this is the check that the policy fits the code.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from base64 import b64decode
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from spdnas.config import load_config
from spdnas.data import write_dataset
from spdnas.pipeline import search
from tests.conftest import start_moto_server, use_s3_endpoint
from tests.deploy.conftest import load_template
from tests.deploy.iam_eval import is_allowed
from tests.distributed.test_ray_train import tiny_dataset

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

BUCKET = "spdnas-rights"
ARROW_PROBE_BUCKET = "$extremelyunlikelytoexist$"  # arrow/cpp/src/arrow/filesystem/s3fs.cc, GetBackend
# Query keys of the requests mapped below; any other names a request of another IAM action.
KNOWN_QUERY_KEYS = {"list-type", "prefix", "delimiter", "continuation-token", "max-keys", "marker",
                    "encoding-type", "fetch-owner", "start-after", "uploadId", "partNumber", "uploads",
                    "delete", "location", "x-id"}


def node_policy() -> dict:
    """The nodes' data-access policy from the template, for this test's bucket."""
    document = load_template()["Resources"]["DataAccessPolicy"]["Properties"]["PolicyDocument"]
    arn = f"arn:aws:s3:::{BUCKET}"
    text = json.dumps(document).replace('{"Fn::GetAtt": ["DataBucket", "Arn"]}', json.dumps(arn))
    text = re.sub(r'\{"Fn::Sub": "\$\{DataBucket\.Arn\}([^"]*)"\}',
                  lambda m: json.dumps(arn + m.group(1)), text)
    assert "Fn::" not in text, text
    return json.loads(text)


def iam_requests(entry: dict) -> list[tuple[str, str, dict]]:
    """The ``(action, resource, condition keys)`` S3 authorises one recorded request as."""
    url = urlsplit(entry["url"])
    bucket, _, key = url.path.lstrip("/").partition("/")
    key = unquote(key)
    query = parse_qs(url.query, keep_blank_values=True)
    unknown = set(query) - KNOWN_QUERY_KEYS  # e.g. ?versions, ?tagging, ?acl: other IAM actions
    assert not unknown, f"unmapped S3 request {entry['method']} {entry['url']}"
    method = entry["method"]
    arn = f"arn:aws:s3:::{bucket}"
    if not key:
        if method == "HEAD":  # HeadBucket
            return [("s3:ListBucket", arn, {})]
        if method == "GET" and "location" in query:
            return [("s3:GetBucketLocation", arn, {})]
        if method == "GET" and not {"uploads", "delete"} & set(query):  # ListObjects(V2)
            prefix = query.get("prefix", [None])[0]
            return [("s3:ListBucket", arn, {} if prefix is None else {"s3:prefix": prefix})]
        if method == "POST" and "delete" in query:  # DeleteObjects: each key is a DeleteObject
            body = b64decode(entry["body"]) if entry.get("body_encoded") else entry["body"].encode()
            keys = [e.text for e in ET.fromstring(body).iter() if e.tag.endswith("Key")]
            assert keys
            return [("s3:DeleteObject", f"{arn}/{k}", {}) for k in keys]
        if method == "PUT":
            return [("s3:CreateBucket", arn, {})]
    else:
        target = f"{arn}/{key}"
        if method in ("GET", "HEAD") and "uploadId" not in query:
            return [("s3:GetObject", target, {})]
        if method == "PUT" or (method == "POST" and ("uploads" in query or "uploadId" in query)):
            copied = entry["headers"].get("x-amz-copy-source") or entry["headers"].get("X-Amz-Copy-Source")
            source = [("s3:GetObject", f"arn:aws:s3:::{unquote(copied).lstrip('/')}", {})] if copied else []
            return [("s3:PutObject", target, {}), *source]
        if method == "DELETE":
            return [("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject", target, {})]
    raise AssertionError(f"unmapped S3 request {method} {entry['url']}")


@pytest.fixture(scope="module")
def recording_s3(tmp_path_factory):
    """A recording moto server as the only S3, a dataset under datasets/ (written by the user,
    not recorded), and a Ray instance whose workers use that server."""
    import ray
    import requests

    recording = tmp_path_factory.mktemp("moto") / "requests.jsonl"
    server, endpoint = start_moto_server(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=str(recording))
    try:
        with pytest.MonkeyPatch.context() as env:
            use_s3_endpoint(env, endpoint)
            from spdnas.data import s3

            s3.client().create_bucket(Bucket=BUCKET)
            data = f"s3://{BUCKET}/datasets/tiny"
            write_dataset(tiny_dataset(), data)
            requests.post(f"{endpoint}/moto-api/recorder/reset-recording", timeout=30).raise_for_status()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _temp_dir=str(tmp_path_factory.mktemp("ray")))
            try:
                yield data, recording
            finally:
                ray.shutdown()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_run_on_s3_stays_within_the_node_policy(recording_s3):
    data, recording = recording_s3
    config = load_config(None, [f"data.uri={data}", "data.builder=null",
                                f"runtime.output_dir=s3://{BUCKET}/experiments", "model.reduced_dims=[3]",
                                "search.batch_size=8", "search.epochs=2", "runtime.progress=false",
                                "distributed.backend=ray", "name=rights"])
    search(config)
    search(config, resume=False)  # deletes the earlier run, then runs again

    entries = [json.loads(line) for line in recording.read_text().splitlines()]
    requested = [r for e in entries for r in iam_requests(e)]
    # Arrow detects the S3 flavour with a HeadBucket on a bucket that cannot exist and expects
    # it to fail (any error will do); every other request goes to our bucket.
    probe = ("s3:ListBucket", f"arn:aws:s3:::{quote(ARROW_PROBE_BUCKET)}", {})
    assert all(r == probe for r in requested if not r[1].startswith(f"arn:aws:s3:::{BUCKET}"))
    checked = [r for r in requested if r != probe]
    policy = [node_policy()]
    refused = sorted({f"{a} {res} {ctx}" for a, res, ctx in checked if not is_allowed(policy, a, res, ctx)})
    assert refused == [], "\n".join(refused)
    seen = {(a, res.split("/")[1] if "/" in res else "") for a, res, _ in checked}
    assert {("s3:GetObject", "datasets"), ("s3:PutObject", "experiments"),
            ("s3:DeleteObject", "experiments"), ("s3:ListBucket", "")} <= seen
    assert ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", {}) in checked  # the HeadBucket Arrow sends
