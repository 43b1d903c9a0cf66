"""What a user of `docker compose up -d --build` relies on, read from the files themselves (no
Docker engine runs here): the design's services are all there, built from this repository with
mounted config files that exist, configured only through the contract's environment variables,
healthy before their dependants start, and wired to each other consistently — the seed rows to
the sample server, the services to PostgreSQL, RabbitMQ and the collector, Prometheus to the
metrics ports, Grafana to Prometheus. The object-storage override (docker-compose.s3.yml) adds a
local S3 server and its bucket, and points the api and the workers at it. Also the Dockerfile's
layer order that keeps rebuilds fast."""

from __future__ import annotations

import ast
import base64
import fnmatch
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from imagebatch.core.settings import CommonSettings
from tests.support.contract import CONNECTION_ENV, CONTRACT_ENV, MESSAGING_ENV

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
S3_OVERRIDE = REPO / "docker-compose.s3.yml"
IMAGE = "imagebatch:dev"
DESIGN_SERVICES = {
    "postgres",
    "rabbitmq",
    "api",
    "worker",
    "samples",
    "otel-collector",
    "jaeger",
    "prometheus",
    "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    assert isinstance(raw, dict), "environment as a mapping, so each name is checked"
    return {str(key): str(value) for key, value in raw.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            mounts.append((REPO / source, target))
    return mounts


def our_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


# --- the stack -----------------------------------------------------------------------------------


def test_the_stack_has_every_service_of_the_design(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == DESIGN_SERVICES


def test_the_api_the_workers_and_the_sample_server_are_built_from_this_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(our_services(services)) == {"api", "worker", "samples"}
    for name, service in our_services(services).items():
        build = service["build"]
        assert (REPO / build["context"]).resolve() == REPO, name
        assert (REPO / build["context"] / build["dockerfile"]).is_file(), name


def test_other_images_are_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_every_mounted_config_file_exists_in_the_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = [mount for service in services.values() for mount in bind_mounts(service)]
    assert len(mounts) >= 5, "seed, collector, prometheus and grafana configs are mounted"
    for source, target in mounts:
        assert source.exists(), f"{source} (mounted at {target}) is missing"


def test_the_processes_get_only_environment_variables_the_contract_names(
    services: dict[str, dict[str, Any]],
) -> None:
    common = {name.upper() for name in CommonSettings.model_fields}
    assert common.issuperset(MESSAGING_ENV | CONNECTION_ENV), "the shared settings read these"
    for name, service in our_services(services).items():
        assert set(env(service)) <= CONTRACT_ENV[name], name


def test_the_local_api_runs_without_authentication_on_purpose_and_only_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert env(api)["AUTH_MODE"] == "none", "set explicitly: an unset AUTH_MODE is not `none`"
    assert [str(port).split(":")[0] for port in api["ports"]] == ["127.0.0.1"]
    assert "AUTH_MODE: none" in COMPOSE_FILE.read_text()


def test_published_ports_are_the_documented_ones_on_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    published: dict[str, set[int]] = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this machine"
            assert host_port == container_port
            published.setdefault(name, set()).add(int(host_port))
    assert published["api"] == {8000}
    assert {5672, 15672} <= published["rabbitmq"]
    assert published["jaeger"] == {16686}
    assert published["prometheus"] == {9090}
    assert published["grafana"] == {3000}
    assert "worker" not in published, "a published port would stop `--scale worker=N`"


def test_servers_have_health_checks_and_dependants_wait_for_them(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("postgres", "rabbitmq", "api", "worker", "samples", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
    assert services["worker"]["depends_on"]["samples"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_our_health_checks_probe_the_documented_endpoints(
    services: dict[str, dict[str, Any]],
) -> None:
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert "http://127.0.0.1:8000/healthz" in probe("api")
    assert f"http://127.0.0.1:{env(services['worker'])['METRICS_PORT']}/readyz" in probe("worker")
    assert "http://127.0.0.1:8765/healthz" in probe("samples")


# --- wiring --------------------------------------------------------------------------------------


def test_api_and_workers_share_the_data_volume_for_thumbnails_and_uploads(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert "data" in compose["volumes"]
    for name in ("api", "worker"):
        assert "data:/data" in services[name]["volumes"], name
        assert env(services[name])["OUTPUT_DIR"] == "/data", name
        assert env(services[name])["UPLOADS_DIR"] == "/data/uploads", name


def test_the_services_reach_postgres_with_the_credentials_it_is_given(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = env(services["postgres"])
    assert postgres["POSTGRES_DB"] == "images"
    assert (REPO / "db/init", "/docker-entrypoint-initdb.d") in [
        (source, target) for source, target in bind_mounts(services["postgres"])
    ]
    roles = (REPO / "db/init/02-roles.sql").read_text()
    # The api migrates (there is no operator here): the owner. The worker: its own role.
    for name, role in (("api", "imagebatch"), ("worker", "imagebatch_worker")):
        url = urlsplit(env(services[name])["DATABASE_URL"])
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/images"), name
        assert (url.username, url.password) == (role, role), "02-roles.sql's dev password"
        assert f"'{role}'" in roles, f"02-roles.sql makes {role}"


def test_the_services_reach_rabbitmq_with_a_user_allowed_over_the_network(
    services: dict[str, dict[str, Any]],
) -> None:
    rabbit = env(services["rabbitmq"])
    assert rabbit["RABBITMQ_DEFAULT_USER"] != "guest", "guest may only log in from localhost"
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.")
    assert services["rabbitmq"]["image"].endswith("-management"), "the management UI on 15672"
    definitions = json.loads((REPO / "manifests/base/rabbitmq-definitions.json").read_text())
    users = {u["name"]: u for u in definitions["users"]}
    assert rabbit["RABBITMQ_DEFAULT_USER"] in users, "the file keeps the documented admin"
    for name in ("api", "worker"):
        url = urlsplit(env(services[name])["RABBIT_URL"])
        assert (url.scheme, url.hostname, url.port) == ("amqp", "rabbitmq", 5672), name
        assert url.username == f"imagebatch-{name}", "each service its own user"
        raw = base64.b64decode(users[url.username]["password_hash"])
        assert raw[4:] == hashlib.sha256(raw[:4] + (url.password or "").encode()).digest()


def test_the_worker_may_fetch_from_the_private_sample_server_and_the_file_says_why(
    services: dict[str, dict[str, Any]],
) -> None:
    assert env(services["worker"])["ALLOW_PRIVATE_SOURCES"] == "true"
    assert "ALLOW_PRIVATE_SOURCES" not in env(services["api"])
    lines = COMPOSE_FILE.read_text().splitlines()
    setting = next(i for i, line in enumerate(lines) if "ALLOW_PRIVATE_SOURCES:" in line)
    comment = " ".join(line.strip() for line in lines[setting - 6 : setting] if "#" in line)
    assert "samples" in comment
    assert "private" in comment


def test_the_seed_rows_point_at_the_sample_server_where_compose_runs_it(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["samples"]["command"]
    assert command[:3] == ["python", "-m", "imagebatch.devservers.samples"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags["--host"] == "0.0.0.0", "reachable from the other containers"
    seed = (REPO / "db/init/01-seed.sql").read_text()
    hosts = set(re.findall(r"http://([a-z0-9.-]+:\d+)/samples/", seed))
    assert hosts == {f"samples:{flags['--port']}"}


def test_traces_go_through_the_collector_to_jaeger(services: dict[str, dict[str, Any]]) -> None:
    endpoints = {env(services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"] for name in ("api", "worker")}
    assert endpoints == {"http://otel-collector:4317"}
    collector_mounts = dict(
        (target, source) for source, target in bind_mounts(services["otel-collector"])
    )
    config_path = collector_mounts["/etc/otelcol/config.yaml"]
    assert any("/etc/otelcol/config.yaml" in arg for arg in services["otel-collector"]["command"])
    config = yaml.safe_load(config_path.read_text())
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"] == "0.0.0.0:4317"
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    jaeger = [config["exporters"][name] for name in exporters if name.startswith("otlp")]
    assert [exporter["endpoint"] for exporter in jaeger] == ["jaeger:4317"]


def test_prometheus_scrapes_the_api_and_every_worker(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict((target, source) for source, target in bind_mounts(services["prometheus"]))
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["api"]["static_configs"][0]["targets"] == [f"api:{env(services['api'])['PORT']}"]
    worker_dns = jobs["worker"]["dns_sd_configs"][0]
    assert worker_dns["names"] == ["worker"]
    assert worker_dns["port"] == int(env(services["worker"])["METRICS_PORT"])
    assert {jobs["api"]["metrics_path"], jobs["worker"]["metrics_path"]} == {"/metrics"}


def test_grafana_is_provisioned_with_prometheus_and_a_dashboard_that_uses_it(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = dict((target, source) for source, target in bind_mounts(services["grafana"]))
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards/imagebatch.yaml").read_text())
    dashboards_dir = providers["providers"][0]["options"]["path"]
    assert mounts[dashboards_dir].is_dir()
    dashboards = list(mounts[dashboards_dir].glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["panels"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
            assert all(target["expr"] for target in panel["targets"]), panel["title"]


# --- with the object-storage override: `-f docker-compose.yml -f docker-compose.s3.yml` ----------

REPLACED_BY_AN_OVERRIDE = {"command", "entrypoint", "test"}
"""Compose replaces these sequences when a later file sets them; it merges other mappings and
sequences with the earlier file's."""


def merge(earlier: Any, later: Any, key: str = "") -> Any:
    if isinstance(earlier, dict) and isinstance(later, dict):
        merged = dict(earlier)
        for name, value in later.items():
            merged[name] = merge(earlier[name], value, name) if name in earlier else value
        return merged
    if isinstance(earlier, list) and isinstance(later, list) and key not in REPLACED_BY_AN_OVERRIDE:
        return earlier + [item for item in later if item not in earlier]
    return later


@pytest.fixture(scope="module")
def s3_override() -> dict[str, Any]:
    document = yaml.safe_load(S3_OVERRIDE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def s3_stack(compose: dict[str, Any], s3_override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services as `docker compose -f docker-compose.yml -f docker-compose.s3.yml` runs them."""
    stack: dict[str, dict[str, Any]] = merge(compose, s3_override)["services"]
    return stack


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_override_adds_an_s3_server_and_its_bucket_job_to_the_whole_stack(
    s3_override: dict[str, Any], s3_stack: dict[str, dict[str, Any]]
) -> None:
    assert set(s3_override["services"]) == {"s3", "s3-buckets", "api", "worker"}
    assert set(s3_stack) == DESIGN_SERVICES | {"s3", "s3-buckets"}
    assert "s3" in s3_override["volumes"], "the buckets outlive the container"


def test_the_s3_server_is_versitygw_pinned_and_no_compose_file_uses_minio(
    s3_stack: dict[str, dict[str, Any]],
) -> None:
    image = s3_stack["s3"]["image"]
    assert image.startswith("versity/versitygw:v"), "Apache-2.0, on Docker Hub"
    assert image.rpartition(":")[2] != "latest"
    assert s3_stack["s3"]["command"][-2:] == ["posix", "/data"], "serves its volume"
    assert ("s3", "/data") in [tuple(str(v).split(":")[:2]) for v in s3_stack["s3"]["volumes"]]
    for path in REPO.glob("docker-compose*.yml"):
        assert "minio" not in path.read_text().lower(), f"{path.name}: MinIO's server is AGPL"


def test_the_s3_server_is_published_on_loopback_and_probed_where_it_answers(
    s3_stack: dict[str, dict[str, Any]],
) -> None:
    server = s3_stack["s3"]
    port = flag(server["command"], "--port").rpartition(":")[2]
    assert server["ports"] == [f"127.0.0.1:{port}:{port}"]
    health = flag(server["command"], "--health")
    assert server["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}{health}"
    for name, service in s3_stack.items():
        for published in service.get("ports", []):
            assert str(published).startswith("127.0.0.1:"), f"{name} publishes {published}"


def test_the_api_and_the_workers_keep_thumbnails_and_uploads_in_the_local_bucket(
    s3_stack: dict[str, dict[str, Any]],
) -> None:
    server = s3_stack["s3"]
    port = int(flag(server["command"], "--port").rpartition(":")[2])
    for name in ("api", "worker"):
        settings = env(s3_stack[name])
        assert set(settings) <= CONTRACT_ENV[name], name
        output, uploads = settings["OUTPUT_URL"], settings["UPLOADS_URL"]
        assert output.startswith("s3://"), name
        assert uploads.startswith(output + "/"), f"{name}: uploads in the same bucket"
        endpoint = urlsplit(settings["AWS_ENDPOINT_URL_S3"])
        assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "s3", port), name
        assert settings["AWS_ACCESS_KEY_ID"] == env(server)["ROOT_ACCESS_KEY"], name
        assert settings["AWS_SECRET_ACCESS_KEY"] == env(server)["ROOT_SECRET_KEY"], name
        assert settings["AWS_REGION"] == flag(server["command"], "--region"), name


def test_the_bucket_exists_before_the_api_and_the_workers_start(
    s3_stack: dict[str, dict[str, Any]],
) -> None:
    job = s3_stack["s3-buckets"]
    assert job["image"] == IMAGE
    assert (REPO / job["build"]["context"]).resolve() == REPO
    assert job["restart"] == "no", "a one-shot: it exits once the bucket is there"
    assert job["depends_on"]["s3"]["condition"] == "service_healthy"
    ((script, target),) = bind_mounts(job)
    assert script == REPO / "deploy/s3/create_buckets.py"
    assert job["command"] == ["python", target]
    for name in ("api", "worker"):
        depends = s3_stack[name]["depends_on"]
        assert depends["s3-buckets"]["condition"] == "service_completed_successfully", name
        assert env(job) == {k: v for k, v in env(s3_stack[name]).items() if k in env(job)}, name
        assert {"OUTPUT_URL", "UPLOADS_URL", "AWS_ENDPOINT_URL_S3"} <= set(env(job))


# --- the image -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in joined.splitlines()
        if line.strip()
    ]


def copied_sources(arguments: str) -> list[str]:
    parts = [part for part in arguments.split() if not part.startswith("--")]
    return [part.rstrip("/") for part in parts[:-1]]


def test_the_dockerfile_installs_dependencies_before_it_copies_the_source() -> None:
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    copies = [(i, copied_sources(args)) for i, (op, args) in enumerate(steps) if op == "COPY"]
    pyproject = next(i for i, sources in copies if "pyproject.toml" in sources)
    source_copies = {
        src: i
        for i, sources in copies
        for src in sources
        if src in {"imagebatch", "operator", "worker", "api"}
    }
    assert set(source_copies) == {"imagebatch", "operator", "worker", "api"}
    dependency_install = next(
        i
        for i, (op, args) in enumerate(steps)
        if op == "RUN" and "tomllib" in args and "pip install -r" in args
    )
    editable = next(
        i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install --no-deps" in args
    )
    assert pyproject < dependency_install < min(source_copies.values())
    assert max(source_copies.values()) < editable
    assert " -e ." in steps[editable][1] + " "


def test_the_image_runs_as_a_numeric_non_root_user_and_defaults_to_the_worker() -> None:
    steps = dockerfile_instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users
    assert users[-1].split(":")[0].isdigit()
    assert users[-1].split(":")[0] != "0"
    assert ("CMD", '["imagebatch-worker"]') in steps
    exposed = {port for op, args in steps if op == "EXPOSE" for port in args.split()}
    assert exposed == {"8000", "9100"}
    assert any(op == "VOLUME" and "/data" in args for op, args in steps)


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context (last matching pattern wins)."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, glob) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    for op, args in dockerfile_instructions():
        if op == "COPY":
            for source in copied_sources(args):
                assert (REPO / source).exists(), source
                assert not dockerignored(source), f"{source} is copied but .dockerignore drops it"
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "imagebatch/__pycache__/x.pyc",
    ):
        assert dockerignored(path), path


# --- the Tiltfile (Starlark, written in the syntax it shares with Python) ------------------------

TILTFILE = REPO / "Tiltfile"


class Tiltfile:
    """The Tiltfile's calls and constants, read with Python's parser (no Tilt here)."""

    def __init__(self) -> None:
        self.tree = ast.parse(TILTFILE.read_text(), filename="Tiltfile")
        self.constants: dict[str, Any] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:
                    self.constants[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    continue

    def calls(self, name: str) -> list[ast.Call]:
        return [
            node
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == name
        ]

    def value(self, node: ast.expr) -> Any:
        """Literals, the file's constants, and `+` of those."""
        if isinstance(node, ast.Name):
            return self.constants[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.value(node.left) + self.value(node.right)
        if isinstance(node, ast.List):
            return [self.value(item) for item in node.elts]
        return ast.literal_eval(node)

    def kwarg(self, call: ast.Call, name: str) -> Any:
        (keyword,) = [k for k in call.keywords if k.arg == name]
        return self.value(keyword.value)


def manifest_workloads() -> set[str]:
    names = set()
    for path in (REPO / "manifests" / "base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in {"Deployment", "StatefulSet"}:
                names.add(doc["metadata"]["name"])
    return names


def test_tilt_builds_the_image_the_manifests_run_from_this_repository() -> None:
    tilt = Tiltfile()
    (build,) = tilt.calls("docker_build")
    assert tilt.value(build.args[0]) == IMAGE == tilt.constants["IMAGE"]
    assert (REPO / tilt.kwarg(build, "context")).resolve() == REPO
    assert (REPO / tilt.kwarg(build, "dockerfile")).is_file()
    (kustomization,) = tilt.calls("kustomize")
    assert (REPO / tilt.value(kustomization.args[0]) / "kustomization.yaml").is_file()
    assert tilt.value(kustomization.args[0]) == "manifests", "the claim variant: kind is one node"
    crds = [
        tilt.value(call.args[0])
        for call in tilt.calls("k8s_yaml")
        if isinstance(call.args[0], ast.Constant)
    ]
    assert all((REPO / path).is_file() for path in crds)
    assert {path.name for path in (REPO / "crds").glob("*.yaml")} == {Path(p).name for p in crds}


def test_the_batch_workers_the_operator_makes_run_the_image_tilt_built() -> None:
    """Tilt retags the image it builds; the operator names it in WORKER_IMAGE, an env var."""
    tilt = Tiltfile()
    (build,) = tilt.calls("docker_build")
    assert tilt.kwarg(build, "match_in_env_vars") is True
    (operator,) = [
        doc
        for doc in yaml.safe_load_all((REPO / "manifests" / "base" / "operator.yaml").read_text())
        if doc["kind"] == "Deployment"
    ]
    env = {
        e["name"]: e["value"] for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WORKER_IMAGE"] == IMAGE


def test_live_update_syncs_the_source_the_dockerfile_copies_and_reinstalls_on_pyproject() -> None:
    tilt = Tiltfile()
    copied = {
        src
        for op, args in dockerfile_instructions()
        if op == "COPY"
        for src in copied_sources(args)
        if (REPO / src).is_dir() and src.count("/") == 0
    }
    assert (
        set(tilt.constants["SOURCE_DIRS"]) == copied == {"imagebatch", "operator", "worker", "api"}
    )
    syncs = [call for call in tilt.calls("sync") if isinstance(call.args[0], ast.Constant)]
    for call in syncs:
        local, remote = tilt.value(call.args[0]), tilt.value(call.args[1])
        assert (REPO / local).exists(), local
        assert remote == f"/app/{local}", "the Dockerfile's WORKDIR, where the editable install is"
    runs = {tilt.value(call.args[0]): call for call in tilt.calls("run")}
    reinstall = runs["pip install --no-deps --no-build-isolation -e ."]
    assert tilt.kwarg(reinstall, "trigger") == ["pyproject.toml"]
    assert f"{tilt.constants['RESTART_WRAPPER']} --restart" in runs
    for call in tilt.calls("fall_back_on"):
        assert all((REPO / path).exists() for path in tilt.value(call.args[0]))


def test_the_restart_wrapper_tilt_calls_is_in_the_image() -> None:
    wrapper = Tiltfile().constants["RESTART_WRAPPER"]
    assert ("COPY", f"deploy/docker/rerun.sh /usr/local/bin/{wrapper}") in dockerfile_instructions()


def test_tilt_names_only_workloads_the_manifests_define_and_forwards_the_uis() -> None:
    tilt = Tiltfile()
    resources = {tilt.value(call.args[0]): call for call in tilt.calls("k8s_resource")}
    assert set(resources) <= manifest_workloads()
    forwards = {
        forward
        for call in resources.values()
        if any(k.arg == "port_forwards" for k in call.keywords)
        for forward in tilt.kwarg(call, "port_forwards")
    }
    assert {"8000:8000", "15672:15672", "16686:16686"} <= forwards
    for call in resources.values():
        if any(k.arg == "resource_deps" for k in call.keywords):
            assert set(tilt.kwarg(call, "resource_deps")) <= set(resources)


def test_keda_is_an_opt_in_of_the_tiltfile() -> None:
    text = TILTFILE.read_text()
    assert 'config.define_bool("keda"' in text
    assert "helm upgrade --install keda kedacore/keda" in text
