"""Deployment files parse and say what they must; the ingest shard split is a stable partition.

Fast, no network, no Docker or Kubernetes: the files are read as data.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from reidctl.data.shard import in_shard, parse_shard, select_shard, shard_key, shard_of
from reidctl.errors import InputError

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "standalone" / "docker-compose.yml"
JOB = DEPLOY / "k8s" / "ingest-job.yaml"
DOCKERFILE = DEPLOY / "k8s" / "Dockerfile"
VALUES = {"520k": DEPLOY / "cluster" / "values-520k.yaml",
          "100m": DEPLOY / "cluster" / "values-100m.yaml"}
PLACEHOLDER_IMAGE = "reidctl:latest"  # the only unpinned image allowed: the Job's, built locally

YAML_FILES = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _walk(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a parsed YAML tree."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    elif isinstance(node, list):
        for v in node:
            found.extend(_walk(v, key))
    return found


def _tag(image: str) -> str:
    """The tag of an image reference ('' when there is none)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def _bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ('64Gi', '512Mi', '8G') in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?", str(quantity))
    assert m, f"not a memory quantity: {quantity!r}"
    unit = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
            "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2)]
    return int(float(m.group(1)) * unit)


# --- deployment files ---------------------------------------------------------------------

def test_deploy_has_the_expected_files() -> None:
    for p in [COMPOSE, JOB, DOCKERFILE, *VALUES.values(),
              DEPLOY / "standalone" / "README.md", REPO / "docs" / "scaling.md"]:
        assert p.is_file(), p


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert docs and all(d is not None for d in docs), f"{path} is empty"


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_images_are_pinned(path: Path) -> None:
    tree = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    for image in _walk(tree, "image"):
        if isinstance(image, str):
            if image == PLACEHOLDER_IMAGE and path == JOB:
                continue
            assert _tag(image) not in {"", "latest"}, f"{path.name}: unpinned image {image!r}"
        elif isinstance(image, dict):  # Helm style: {repository, tag}
            for tag in _walk(image, "tag"):
                assert str(tag) not in {"", "latest"}, f"{path.name}: unpinned tag {tag!r}"


def test_compose_runs_etcd_minio_milvus_with_healthchecks() -> None:
    compose = _load(COMPOSE)
    services = compose["services"]
    assert set(services) == {"etcd", "minio", "milvus"}
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert _tag(svc["image"]) not in {"", "latest"}, svc["image"]
    assert services["etcd"]["image"].startswith("quay.io/coreos/etcd:v3.5.")
    assert re.fullmatch(r"minio/minio:RELEASE\.\S+", services["minio"]["image"])
    assert re.fullmatch(r"milvusdb/milvus:v2\.[56]\.\d+", services["milvus"]["image"])

    milvus = services["milvus"]
    assert "http://localhost:9091/healthz" in " ".join(milvus["healthcheck"]["test"])
    assert milvus["depends_on"] == {"etcd": {"condition": "service_healthy"},
                                    "minio": {"condition": "service_healthy"}}
    published = {str(p).split(":")[0] for p in milvus["ports"]}
    assert {"19530", "9091"} <= published

    named = set(compose["volumes"])
    for name, svc in services.items():
        sources = {str(v).split(":")[0] for v in svc.get("volumes", [])}
        assert sources and sources <= named, f"{name} should use named volumes, got {sources}"


def test_ingest_job_is_indexed_and_sharded() -> None:
    job = _load(JOB)
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert isinstance(n, int) and n >= 1 and 1 <= spec["parallelism"] <= n
    assert spec["backoffLimitPerIndex"] >= 1

    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == PLACEHOLDER_IMAGE
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARDS"]["value"] == str(n), "SHARDS must equal completions"
    assert "JOB_COMPLETION_INDEX" in env
    assert {"REIDCTL_OSNET_WEIGHTS", "REIDCTL_MODEL"} <= set(env)

    argv = [*container.get("command", []), *container["args"]]
    line = " ".join(argv)
    assert argv[0] == "ingest" and "/data/images" in argv
    assert "--shard" in argv
    assert argv[argv.index("--shard") + 1] == "$(JOB_COMPLETION_INDEX)/$(SHARDS)"
    assert "--uri http://milvus:19530" in line and "--collection gallery" in line
    for var in re.findall(r"\$\((\w+)\)", line):  # $(VAR) expands only for declared env vars
        assert var in env, var

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/images"]["readOnly"] is True


@pytest.mark.parametrize("size", sorted(VALUES))
def test_helm_values_are_cluster_mode_with_sized_query_nodes(size: str) -> None:
    values = _load(VALUES[size])
    assert values["cluster"]["enabled"] is True
    assert re.fullmatch(r"v2\.[56]\.\d+", values["image"]["all"]["tag"])
    qn = values["queryNode"]
    assert isinstance(qn["replicas"], int) and qn["replicas"] >= 2
    for kind in ("requests", "limits"):
        assert _bytes(qn["resources"][kind]["memory"]) > 0
    for component in ("proxy", "dataNode", "indexNode"):
        assert values[component]["replicas"] >= 1 and values[component]["resources"]
    assert values["etcd"]["replicaCount"] == 3
    assert values["minio"]["enabled"] or values["externalS3"]["enabled"]
    assert values["pulsarv3"]["enabled"] or values["kafka"]["enabled"]


def test_helm_values_hold_the_sizing_arithmetic() -> None:
    """The numbers in docs/scaling.md, checked against the query nodes the files ask for."""
    per_image_global, per_image_local, per_image_local_ids = 953, 2136, 88

    small = _load(VALUES["520k"])["queryNode"]
    need = 520_000 * (per_image_global + per_image_local) * 2 + 2**30  # x2 + 1 GiB, one copy
    assert _bytes(small["resources"]["limits"]["memory"]) >= need  # each node holds a copy

    big = _load(VALUES["100m"])["queryNode"]
    per_replica = 100_000_000 * (per_image_global + per_image_local_ids) * 1.5  # local mmapped
    total = big["replicas"] * _bytes(big["resources"]["limits"]["memory"])
    assert total >= 2 * per_replica  # two in-memory replicas


def test_dockerfile_base_image_is_pinned() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    bases = re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", text, flags=re.MULTILINE)
    assert bases, "no FROM line"
    for base in bases:
        assert base.startswith("python:3.11"), base
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), f"unpinned base {base!r}"
    assert re.search(r"^ENTRYPOINT \[\"reidctl\"\]", text, flags=re.MULTILINE)


# --- the shard split ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cuhk03_files(cuhk03_root: Path) -> list[Path]:
    files = sorted(cuhk03_root.rglob("*.jpg"))
    if len(files) < 100:
        pytest.skip(f"too few images under {cuhk03_root}")
    return files


@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_shards_partition_the_real_file_list(
    cuhk03_root: Path, cuhk03_files: list[Path], n: int
) -> None:
    shards = [select_shard(cuhk03_files, i, n, root=cuhk03_root) for i in range(n)]
    seen = Counter(f for shard in shards for f in shard)
    assert set(seen) == set(cuhk03_files)          # union is everything
    assert set(seen.values()) == {1}               # each file in exactly one shard
    assert sum(map(len, shards)) == len(cuhk03_files)
    expected = len(cuhk03_files) / n
    for i, shard in enumerate(shards):
        assert abs(len(shard) - expected) <= 0.25 * expected, (i, len(shard), expected)
        assert shard == [f for f in cuhk03_files if in_shard(f, i, n, root=cuhk03_root)]


def test_shard_assignment_is_stable_across_processes(
    cuhk03_root: Path, cuhk03_files: list[Path]
) -> None:
    """A fresh interpreter with another hash seed computes the same split."""
    here = {shard_key(f, cuhk03_root): [shard_of(shard_key(f, cuhk03_root), n) for n in (2, 7, 16)]
            for f in cuhk03_files}
    code = (
        "import json, sys; from pathlib import Path\n"
        "from reidctl.data.shard import shard_key, shard_of\n"
        "root = Path(sys.argv[1])\n"
        "keys = [shard_key(f, root) for f in sorted(root.rglob('*.jpg'))]\n"
        "print(json.dumps({k: [shard_of(k, n) for n in (2, 7, 16)] for k in keys}))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="4242")
    out = subprocess.run([sys.executable, "-c", code, str(cuhk03_root)], capture_output=True,
                         text=True, check=True, env=env, cwd=REPO, timeout=120)
    assert json.loads(out.stdout) == here


def test_shard_numbers_are_fixed() -> None:
    """Golden values (sha256 via coreutils): a changed scheme would split mixed-version workers."""
    assert [shard_of("val/0001_00.jpg", n) for n in (2, 3, 7, 16)] == [1, 1, 1, 15]
    assert [shard_of("x.jpg", n) for n in (2, 3, 7, 16)] == [0, 2, 5, 0]


def test_shards_do_not_depend_on_input_order() -> None:
    files = [Path(f"/data/images/cam{c}/{p:04d}_{s:02d}.jpg")
             for c in range(3) for p in range(60) for s in range(4)]
    shuffled = files[:]
    random.Random(0).shuffle(shuffled)
    for n in (2, 7):
        for i in range(n):
            a = select_shard(files, i, n, root=Path("/data/images"))
            b = select_shard(shuffled, i, n, root=Path("/data/images"))
            assert set(a) == set(b)
            assert b == [f for f in shuffled if f in set(b)]  # input order is kept


def test_shards_do_not_depend_on_the_mount_point() -> None:
    rel = [PurePosixPath(f"p{p:03d}/{s}.jpg") for p in range(50) for s in range(3)]
    for n in (3, 16):
        a = [in_shard(Path("/data/images") / r, 1, n, root=Path("/data/images")) for r in rel]
        b = [in_shard(Path("/mnt/gallery") / r, 1, n, root=Path("/mnt/gallery")) for r in rel]
        c = [in_shard(r, 1, n) for r in rel]  # already relative: no root needed
        assert a == b == c


def test_file_outside_the_root_is_an_input_error() -> None:
    with pytest.raises(InputError, match="not under the ingest root"):
        select_shard([Path("/elsewhere/a.jpg")], 0, 2, root=Path("/data/images"))


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("3/7", (3, 7)),
                                            ("15/16", (15, 16)), (" 2 / 4 ", (2, 4))])
def test_parse_shard_accepts(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["7/7", "-1/3", "a/b", "1", "1/0", "3/2", "", "1/2/3", "1.0/2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(InputError) as e:
        parse_shard(text)
    message = str(e.value)
    assert "\n" not in message
    assert message == f"--shard must look like i/N with 0 <= i < N, got {text!r}"


@pytest.mark.parametrize("index, count", [(2, 2), (-1, 3), (0, 0)])
def test_bad_index_is_an_input_error(index: int, count: int) -> None:
    with pytest.raises(InputError):
        in_shard("a.jpg", index, count)
    with pytest.raises(InputError):
        select_shard([Path("a.jpg")], index, count)
