"""The dev-cluster manifests (manifests/, applied by `tilt up` or `kubectl apply -k manifests/`)
against a real API server: the whole kustomization passes server-side validation and admission,
the example ImageBatch is accepted, and the RBAC rules grant each service account what its process
does — checked by the API server's own authorizer — and nothing it does not need.

Both variants: manifests/ (thumbnails and uploads on one shared claim) and manifests/s3/ (the
same objects with a bucket instead: no claim, no /data volume, the AWS variables in the
connections Secret)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagebatch.core.imagebatch import run_spec
from imagebatch.operator import children
from imagebatch.operator.settings import OperatorSettings
from tests.support.contract import ANY_PROCESS_ENV
from tests.support.k8s import KubeCluster

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
S3_VARIANT = MANIFESTS / "s3"
VARIANTS = pytest.mark.parametrize("variant", [MANIFESTS, S3_VARIANT], ids=["claim", "s3"])
NAMESPACE = "imagebatch"
IMAGE = "imagebatch:dev"


def render(kube_cluster: KubeCluster, kustomization: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k <kustomization>` would send, as kubectl's kustomize builds
    them."""
    output = kube_cluster.kubectl("kustomize", str(kustomization)).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module")
def rendered(kube_cluster: KubeCluster) -> list[dict[str, Any]]:
    """What `kubectl apply -k manifests/` sends."""
    return render(kube_cluster, MANIFESTS)


@pytest.fixture(scope="module")
def rendered_s3(kube_cluster: KubeCluster) -> list[dict[str, Any]]:
    """What `kubectl apply -k manifests/s3/` sends."""
    return render(kube_cluster, S3_VARIANT)


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """The manifests' namespace, created for real (dry runs of namespaced objects need it) and
    removed afterwards unless it was there before (a dev deployment on a kind cluster)."""
    existed = kube_cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode == 0
    kube_cluster.kubectl("apply", "-f", str(BASE / "namespace.yaml"))
    yield NAMESPACE
    if not existed:
        kube_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def of_kind(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in rendered if doc["kind"] == kind}


def pod_specs(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in rendered
        if doc["kind"] in {"Deployment", "StatefulSet"}
    }


def containers_of_our_image(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: container
        for name, spec in pod_specs(rendered).items()
        for container in spec["containers"]
        if container["image"] == IMAGE
    }


# --- the API server accepts them -----------------------------------------------------------------


@VARIANTS
def test_the_kustomization_passes_server_side_validation(
    kube_cluster: KubeCluster, namespace: str, variant: Path
) -> None:
    result = kube_cluster.kubectl("apply", "--dry-run=server", "-k", str(variant), check=False)

    assert result.returncode == 0, result.stderr
    accepted = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(accepted) == len(render(kube_cluster, variant))


@pytest.mark.parametrize(
    ("example", "name"),
    [("imagebatch.yaml", "holiday-photos"), ("imagebatch-postgres.yaml", "seeded-photos")],
)
def test_the_example_image_batches_are_admitted(
    kube_cluster: KubeCluster, namespace: str, example: str, name: str
) -> None:
    result = kube_cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        str(REPO / "examples" / example),
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert f"imagebatch.imagejobs.io/{name} created (server dry run)" in result.stdout


def test_every_example_is_checked() -> None:
    assert sorted(p.name for p in (REPO / "examples").glob("*.yaml")) == [
        "imagebatch-postgres.yaml",
        "imagebatch.yaml",
    ]


def test_keda_objects_are_left_to_the_operator(rendered: list[dict[str, Any]]) -> None:
    assert not [doc for doc in rendered if doc["apiVersion"].startswith("keda.sh/")]
    assert not [doc for doc in rendered if doc["kind"] == "ImageBatch"]


def test_every_namespaced_object_is_in_the_imagebatch_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for doc in rendered:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
    for binding in of_kind(rendered, "ClusterRoleBinding").values():
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE


# --- the workloads -------------------------------------------------------------------------------


def test_the_design_s_workloads_are_all_there(rendered: list[dict[str, Any]]) -> None:
    assert set(of_kind(rendered, "StatefulSet")) == {"postgres", "rabbitmq"}
    assert {"api", "worker", "operator", "samples"} <= set(of_kind(rendered, "Deployment"))
    assert {"postgres", "rabbitmq", "api", "worker-metrics", "samples"} <= set(
        of_kind(rendered, "Service")
    )
    commands = {name: c["command"][0] for name, c in containers_of_our_image(rendered).items()}
    assert commands == {
        "api": "imagebatch-api",
        "worker": "imagebatch-worker",
        "operator": "imagebatch-operator",
        "samples": "python",
    }


def test_every_pod_runs_as_non_root_with_requests_and_limits(
    rendered: list[dict[str, Any]],
) -> None:
    for name, spec in pod_specs(rendered).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
            assert "livenessProbe" in container, name


def test_api_and_worker_probe_healthz_for_liveness_and_readyz_for_readiness(
    rendered: list[dict[str, Any]],
) -> None:
    containers = containers_of_our_image(rendered)
    for name, port in (("api", 8000), ("worker", 9100)):
        container = containers[name]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"]["path"] == path, (name, probe)
            assert ports[container[probe]["httpGet"]["port"]] == port, (name, probe)


def environment(rendered: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's variables as its process sees them: `env` over its Secrets and ConfigMaps."""
    sources = {
        "secretRef": {name: doc["stringData"] for name, doc in of_kind(rendered, "Secret").items()},
        "configMapRef": {name: doc["data"] for name, doc in of_kind(rendered, "ConfigMap").items()},
    }
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ((ref, target),) = source.items()
        values.update(sources[ref][target["name"]])
    values.update({v["name"]: v.get("value", "") for v in container.get("env", [])})
    return values


@VARIANTS
def test_our_processes_get_only_contract_environment_variables(
    kube_cluster: KubeCluster, variant: Path
) -> None:
    rendered = render(kube_cluster, variant)
    for name, container in containers_of_our_image(rendered).items():
        assert set(environment(rendered, container)) <= ANY_PROCESS_ENV, name


SERVICE_SECRETS = {
    "worker": ("imagebatch-connections", "imagebatch_worker", "imagebatch-worker"),
    "api": ("imagebatch-api-connections", "imagebatch_api", "imagebatch-api"),
    "operator": ("imagebatch-operator-connections", "imagebatch", "imagebatch-operator"),
}
"""Each service's Secret, PostgreSQL role and RabbitMQ user."""


def rabbit_password_matches(user: dict[str, str], password: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    raw = base64.b64decode(user["password_hash"])
    return raw[4:] == hashlib.sha256(raw[:4] + password.encode()).digest()


def test_each_service_connects_as_its_own_role_and_user(rendered: list[dict[str, Any]]) -> None:
    secrets = of_kind(rendered, "Secret")
    port = of_kind(rendered, "Service")["postgres"]["spec"]["ports"][0]["port"]
    database = of_kind(rendered, "Secret")["postgres"]["stringData"]["POSTGRES_DB"]
    definitions = json.loads((BASE / "rabbitmq-definitions.json").read_text())
    users = {u["name"]: u for u in definitions["users"]}
    roles_sql = (BASE / "seed" / "02-roles.sql").read_text()
    for service, (secret, role, user) in SERVICE_SECRETS.items():
        container = containers_of_our_image(rendered)[service]
        assert [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e] == [
            secret
        ], service
        values = secrets[secret]["stringData"]
        assert values["DATABASE_URL"] == (
            f"postgresql://{role}:{role}@postgres.{NAMESPACE}.svc.cluster.local:{port}/{database}"
        )
        assert f"'{role}'" in roles_sql, f"02-roles.sql makes {role}"
        rabbit = urllib.parse.urlsplit(values["RABBIT_URL"])
        assert (rabbit.username, rabbit.hostname, rabbit.port) == (
            user,
            f"rabbitmq.{NAMESPACE}.svc.cluster.local",
            5672,
        )
        assert rabbit_password_matches(users[user], rabbit.password or ""), service
    source = urllib.parse.urlsplit(
        secrets["imagebatch-connections"]["stringData"]["SOURCE_DATABASE_URL"]
    )
    assert source.username == "imagebatch_source", "batches read the seed through a read-only role"


def test_api_workers_and_operator_share_the_data_volume(rendered: list[dict[str, Any]]) -> None:
    """The operator mounts it too: it writes each file-output batch's manifest.jsonl there."""
    specs = pod_specs(rendered)
    claim = next(iter(of_kind(rendered, "PersistentVolumeClaim")))
    for name in ("api", "worker", "operator"):
        volumes = {v["name"]: v for v in specs[name]["volumes"]}
        (mount,) = [
            m for m in specs[name]["containers"][0]["volumeMounts"] if m["mountPath"] == "/data"
        ]
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim, name
        assert specs[name]["securityContext"]["fsGroup"] == 10001, "the image's uid writes there"


# --- the s3 variant: a bucket instead of the shared claim ----------------------------------------


def identities(rendered: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of each object, generated names without their hash suffix."""
    return {
        (doc["kind"], re.sub(r"-[a-z0-9]{10}$", "", doc["metadata"]["name"])) for doc in rendered
    }


def test_the_s3_variant_is_the_base_with_a_storage_config_map_instead_of_the_claim(
    rendered: list[dict[str, Any]], rendered_s3: list[dict[str, Any]]
) -> None:
    assert not of_kind(rendered_s3, "PersistentVolumeClaim")
    assert identities(rendered_s3) == (
        identities(rendered) - {("PersistentVolumeClaim", "imagebatch-data")}
        | {("ConfigMap", "imagebatch-storage")}
    )


def test_the_s3_variant_mounts_no_data_volume_on_the_api_the_shared_worker_or_the_operator(
    rendered_s3: list[dict[str, Any]],
) -> None:
    specs = pod_specs(rendered_s3)
    for name in ("api", "worker", "operator"):
        assert "data" not in {v["name"] for v in specs[name].get("volumes") or []}, name
        (container,) = specs[name]["containers"]
        mounts = [m["mountPath"] for m in container.get("volumeMounts") or []]
        assert mounts == ["/tmp"], f"{name}: scratch space only"


def test_the_s3_variant_keeps_thumbnails_and_uploads_in_one_bucket(
    rendered_s3: list[dict[str, Any]],
) -> None:
    containers = containers_of_our_image(rendered_s3)
    outputs = set()
    for name in ("api", "worker"):
        env = environment(rendered_s3, containers[name])
        assert not {"OUTPUT_DIR", "UPLOADS_DIR"} & set(env), f"{name}: no folder settings left"
        assert env["OUTPUT_URL"].startswith("s3://"), name
        assert env["UPLOADS_URL"].startswith("s3://"), name
        outputs.add(env["OUTPUT_URL"])
    operator = environment(rendered_s3, containers["operator"])
    assert {operator["WORKER_OUTPUT_URL"]} == outputs, (
        "the batches write where the shared worker does"
    )
    assert "WORKER_DATA_CLAIM" not in operator, "no claim exists to name"


def test_the_s3_variant_s_connections_secret_carries_the_aws_variables(
    rendered: list[dict[str, Any]], rendered_s3: list[dict[str, Any]]
) -> None:
    base = of_kind(rendered, "Secret")["imagebatch-connections"]["stringData"]
    connections = of_kind(rendered_s3, "Secret")["imagebatch-connections"]["stringData"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(connections)
    assert connections.items() >= base.items(), "the broker and database as in the base"
    for name in ("api", "worker", "operator"):
        env = environment(rendered_s3, containers_of_our_image(rendered_s3)[name])
        assert env["AWS_ACCESS_KEY_ID"] == connections["AWS_ACCESS_KEY_ID"], name
    operator = environment(rendered_s3, containers_of_our_image(rendered_s3)["operator"])
    assert operator["WORKER_CONNECTIONS_SECRET"] == "imagebatch-connections", "batch workers too"


def test_the_cluster_seed_is_the_compose_seed_with_the_in_cluster_sample_server(
    rendered: list[dict[str, Any]],
) -> None:
    def statements(sql: str) -> str:
        return "\n".join(line for line in sql.splitlines() if not line.startswith("--"))

    (seed,) = [
        doc["data"]["01-seed.sql"]
        for doc in rendered
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("postgres-seed")
    ]
    compose_seed = (REPO / "db" / "init" / "01-seed.sql").read_text()
    assert statements(seed) == statements(compose_seed).replace(
        "http://samples:8765/", f"http://samples.{NAMESPACE}.svc.cluster.local:8765/"
    )
    samples = containers_of_our_image(rendered)["samples"]["command"]
    assert samples[samples.index("--port") + 1] == "8765"


def test_kind_maps_the_api_node_port_to_loopback() -> None:
    cluster = yaml.safe_load((REPO / "kind" / "cluster.yaml").read_text())
    documents = yaml.safe_load_all((BASE / "api.yaml").read_text())
    (api,) = [doc for doc in documents if doc["kind"] == "Service"]
    node_port = api["spec"]["ports"][0]["nodePort"]
    mappings = [m for node in cluster["nodes"] for m in node.get("extraPortMappings", [])]
    assert {"containerPort": node_port, "hostPort": node_port, "listenAddress": "127.0.0.1"} in [
        {k: m[k] for k in ("containerPort", "hostPort", "listenAddress")} for m in mappings
    ]


# --- RBAC, asked of the API server's authorizer ---------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rbac")


@pytest.fixture(scope="module")
def service_accounts(
    kube_cluster: KubeCluster, rendered: list[dict[str, Any]], workdir: Path
) -> Iterator[dict[str, str]]:
    """The manifests' ServiceAccounts, ClusterRoles and bindings applied for real under names of
    this test run (a test namespace, suffixed role names), so a dev deployment is never touched.
    Yields the manifests' account name → the user name to impersonate."""
    suffix = uuid.uuid4().hex[:8]
    test_namespace = f"t-rbac-{suffix}"
    renamed: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": test_namespace}}
    ]
    accounts = {}
    for doc in rendered:
        meta = {"name": f"{doc['metadata']['name']}-{suffix}"}
        if doc["kind"] == "ServiceAccount":
            meta["namespace"] = test_namespace
            renamed.append({**doc, "metadata": meta})
            accounts[doc["metadata"]["name"]] = (
                f"system:serviceaccount:{test_namespace}:{meta['name']}"
            )
        elif doc["kind"] == "ClusterRole":
            renamed.append({**doc, "metadata": meta})
        elif doc["kind"] == "ClusterRoleBinding":
            renamed.append(
                {
                    **doc,
                    "metadata": meta,
                    "roleRef": {**doc["roleRef"], "name": f"{doc['roleRef']['name']}-{suffix}"},
                    "subjects": [
                        {**s, "name": f"{s['name']}-{suffix}", "namespace": test_namespace}
                        for s in doc["subjects"]
                    ],
                }
            )
    manifest = workdir / "rbac.json"
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": renamed}))
    kube_cluster.kubectl("apply", "-f", str(manifest))
    try:
        yield accounts
    finally:
        kube_cluster.kubectl("delete", "-f", str(manifest), "--wait=false", check=False)


def can(
    kube_cluster: KubeCluster,
    user: str,
    verb: str,
    resource: str,
    workdir: Path,
    *,
    name: str = "",
) -> bool:
    """The API server's authorizer on `user` doing `verb` on `resource` ("plural.group[/sub]")
    in any namespace, asked through a SubjectAccessReview (kubectl's `auth can-i` answers "no"
    for kinds the server does not serve yet, such as KEDA's here)."""
    plural_group, _, subresource = resource.partition("/")
    plural, _, group = plural_group.partition(".")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "resourceAttributes": {
                "verb": verb,
                "group": group,
                "resource": plural,
                "subresource": subresource,
                "name": name,
            },
        },
    }
    request = workdir / f"review-{uuid.uuid4().hex[:8]}.json"
    request.write_text(json.dumps(review))
    answer = kube_cluster.kubectl("create", "-o", "json", "-f", str(request))
    allowed: bool = json.loads(answer.stdout)["status"].get("allowed", False)
    return allowed


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        # kopf: find the resources it serves, follow namespaces (cluster-wide), post events.
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
        ("create", "events"),
        # the batches: handlers, finalizer and progress annotations, status, TTL.
        ("list", "imagebatches.imagejobs.io"),
        ("watch", "imagebatches.imagejobs.io"),
        ("patch", "imagebatches.imagejobs.io"),
        ("delete", "imagebatches.imagejobs.io"),
        ("patch", "imagebatches.imagejobs.io/status"),
        # each batch's children, applied server-side.
        ("create", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("create", "scaledobjects.keda.sh"),
        ("patch", "scaledobjects.keda.sh"),
        ("create", "triggerauthentications.keda.sh"),
        ("patch", "triggerauthentications.keda.sh"),
    ],
)
def test_the_operator_may_do_what_kopf_and_its_handlers_do(
    kube_cluster: KubeCluster,
    service_accounts: dict[str, str],
    workdir: Path,
    verb: str,
    resource: str,
) -> None:
    assert can(kube_cluster, service_accounts["imagebatch-operator"], verb, resource, workdir)


def test_the_operator_may_only_look_up_the_workers_connections_secret(
    kube_cluster: KubeCluster, service_accounts: dict[str, str], workdir: Path
) -> None:
    operator = service_accounts["imagebatch-operator"]
    assert can(kube_cluster, operator, "get", "secrets", workdir, name="imagebatch-connections")
    assert not can(kube_cluster, operator, "get", "secrets", workdir, name="postgres")


def test_the_api_may_review_its_callers_tokens(
    kube_cluster: KubeCluster, service_accounts: dict[str, str], workdir: Path
) -> None:
    api = service_accounts["imagebatch-api"]
    assert can(kube_cluster, api, "create", "tokenreviews.authentication.k8s.io", workdir)


def test_the_api_runs_with_kubernetes_authentication(rendered: list[dict[str, Any]]) -> None:
    env = {v["name"]: v.get("value") for v in containers_of_our_image(rendered)["api"]["env"]}
    assert env["AUTH_MODE"] == "kubernetes"


@pytest.mark.parametrize(
    ("account", "verb", "resource"),
    [
        ("imagebatch-operator", "get", "secrets"),
        ("imagebatch-operator", "list", "secrets"),
        ("imagebatch-operator", "delete", "deployments.apps"),
        ("imagebatch-operator", "create", "pods"),
        ("imagebatch-operator", "delete", "namespaces"),
        ("imagebatch-operator", "create", "imagebatches.imagejobs.io"),
        # the api works on batches with its callers' tokens: it holds no rights of its own there
        ("imagebatch-api", "create", "imagebatches.imagejobs.io"),
        ("imagebatch-api", "delete", "imagebatches.imagejobs.io"),
        ("imagebatch-api", "patch", "imagebatches.imagejobs.io"),
        ("imagebatch-api", "list", "imagebatches.imagejobs.io"),
        ("imagebatch-api", "create", "deployments.apps"),
        ("imagebatch-api", "patch", "imagebatches.imagejobs.io/status"),
        ("imagebatch-api", "get", "secrets"),
        ("imagebatch-worker", "list", "imagebatches.imagejobs.io"),
        ("imagebatch-worker", "get", "secrets"),
    ],
)
def test_no_account_gets_more_than_its_process_needs(
    kube_cluster: KubeCluster,
    service_accounts: dict[str, str],
    workdir: Path,
    account: str,
    verb: str,
    resource: str,
) -> None:
    assert not can(kube_cluster, service_accounts[account], verb, resource, workdir)


def test_workers_do_not_mount_a_token(rendered: list[dict[str, Any]]) -> None:
    accounts = of_kind(rendered, "ServiceAccount")
    assert accounts["imagebatch-worker"]["automountServiceAccountToken"] is False
    assert pod_specs(rendered)["worker"]["serviceAccountName"] == "imagebatch-worker"
    assert re.fullmatch(r"imagebatch-\w+", pod_specs(rendered)["api"]["serviceAccountName"])


def pod_of(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The pod a workload would create, for the admission checks pods alone get."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def admitted_under_restricted(
    kube_cluster: KubeCluster, namespace: str, objects: list[dict[str, Any]], folder: Path
) -> subprocess.CompletedProcess[str]:
    path = folder / "objects.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return kube_cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False
    )


def test_the_manifests_namespace_enforces_the_restricted_pod_security_standard(
    rendered: list[dict[str, Any]],
) -> None:
    labels = of_kind(rendered, "Namespace")[NAMESPACE]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


@VARIANTS
def test_every_pod_is_admitted_where_restricted_is_enforced(
    kube_cluster: KubeCluster, namespace: str, variant: Path, tmp_path: Path
) -> None:
    rendered = render(kube_cluster, variant)
    pods = []
    for doc in rendered:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            spec = dict(doc["spec"]["template"]["spec"])
            claims = doc["spec"].get("volumeClaimTemplates", [])  # the StatefulSet's own PVCs
            claimed = [{"name": c["metadata"]["name"], "emptyDir": {}} for c in claims]
            spec["volumes"] = [*spec.get("volumes", []), *claimed]
            pods.append(pod_of(f"pss-{doc['metadata']['name']}", spec))

    result = admitted_under_restricted(kube_cluster, namespace, pods, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr
    workloads = kube_cluster.kubectl("apply", "--dry-run=server", "-k", str(variant))
    assert "PodSecurity" not in workloads.stderr, "warn=restricted checks the templates too"


@pytest.mark.parametrize("output", ["file:///data", "s3://thumbs"])
def test_the_operator_s_worker_pods_are_admitted_where_restricted_is_enforced(
    kube_cluster: KubeCluster, namespace: str, output: str, tmp_path: Path
) -> None:
    settings = OperatorSettings(
        database_url="postgresql://u:p@postgres:5432/images",
        rabbit_url="amqp://u:p@rabbitmq:5672/",
        worker_output_url=output,
    )
    spec = run_spec(namespace, "pss", {"source": {"urls": ["https://a.test/x.jpg"]}})
    workers = children.deployment(spec, "0123456789abcdef", settings, replicas=1)
    workers["metadata"].pop("ownerReferences", None)

    result = admitted_under_restricted(
        kube_cluster,
        namespace,
        [workers, pod_of("pss-batch-worker", workers["spec"]["template"]["spec"])],
        tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert "PodSecurity" not in result.stderr, result.stderr


def test_every_component_has_a_network_policy(rendered: list[dict[str, Any]]) -> None:
    policies = of_kind(rendered, "NetworkPolicy").values()
    selected = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in policies}
    workloads = {
        spec["metadata"]["labels"]["app.kubernetes.io/name"]
        for doc in rendered
        if doc["kind"] in {"Deployment", "StatefulSet"}
        for spec in [doc["spec"]["template"]]
    }
    assert workloads <= selected
