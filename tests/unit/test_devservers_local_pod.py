"""The kubelet's environment rules as the worker supervisor applies them to a pod template."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from imagebatch.devservers.local_pod import (
    ContainerConfigError,
    SourceKind,
    container_env,
    localise_paths,
)

OBJECTS: dict[tuple[SourceKind, str], dict[str, str]] = {
    ("Secret", "connections"): {"RABBIT_URL": "amqp://r", "DATABASE_URL": "postgresql://d"},
    ("ConfigMap", "tuning"): {"CONCURRENCY": "4", "bad=key": "skipped"},
}
FIELDS = {"metadata.name": "demo-abc-12345", "metadata.namespace": "ns"}


def read(kind: SourceKind, name: str) -> Mapping[str, str] | None:
    return OBJECTS.get((kind, name))


def env_of(**container: Any) -> dict[str, str]:
    return container_env(container, read, FIELDS)


def key_ref(name: str, source: str, key: str, **optional: bool) -> dict[str, Any]:
    """An `env` entry whose value comes from `key` of the Secret or ConfigMap `source`."""
    field = "secretKeyRef" if source in ("connections", "absent") else "configMapKeyRef"
    return {"name": name, "valueFrom": {field: {"name": source, "key": key, **optional}}}


def test_env_entries_override_env_from_and_later_sources_override_earlier() -> None:
    env = env_of(
        envFrom=[
            {"secretRef": {"name": "connections"}},
            {"configMapRef": {"name": "tuning"}, "prefix": "W_"},
        ],
        env=[{"name": "RABBIT_URL", "value": "amqp://mine"}],
    )

    assert env == {
        "RABBIT_URL": "amqp://mine",
        "DATABASE_URL": "postgresql://d",
        "W_CONCURRENCY": "4",
    }


def test_value_from_keys_and_fields_and_references_to_earlier_variables() -> None:
    env = env_of(
        env=[
            key_ref("DB", "connections", "DATABASE_URL"),
            key_ref("C", "tuning", "CONCURRENCY"),
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "WHERE", "value": "$(POD) in $(DB), $$(POD), $(UNDEFINED)"},
        ]
    )

    assert env["DB"] == "postgresql://d"
    assert env["C"] == "4"
    assert env["WHERE"] == "demo-abc-12345 in postgresql://d, $(POD), $(UNDEFINED)"


def test_optional_references_to_absent_objects_or_keys_leave_the_variable_unset() -> None:
    env = env_of(
        envFrom=[{"secretRef": {"name": "absent", "optional": True}}],
        env=[
            key_ref("A", "absent", "k", optional=True),
            key_ref("B", "connections", "nope", optional=True),
        ],
    )

    assert env == {}


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ({"envFrom": [{"secretRef": {"name": "absent"}}]}, 'secret "absent" not found'),
        ({"env": [key_ref("X", "connections", "k")]}, "couldn't find key k in Secret connections"),
        ({"env": [key_ref("X", "tuning", "k")]}, "couldn't find key k in ConfigMap tuning"),
        (
            {"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]},
            "not supported",
        ),
    ],
)
def test_what_the_kubelet_would_refuse_is_an_error_that_names_it(
    container: dict[str, Any], message: str
) -> None:
    with pytest.raises(ContainerConfigError, match=message):
        container_env(container, read, FIELDS)


def test_paths_on_the_data_volume_map_to_the_data_folder_others_to_a_scratch_folder(
    tmp_path: Path,
) -> None:
    data, scratch = tmp_path / "data", tmp_path / "scratch"

    def local(env: dict[str, str]) -> dict[str, str]:
        return localise_paths(env, mount=PurePosixPath("/data"), data_dir=data, ephemeral=scratch)

    assert local({}) == {"OUTPUT_DIR": str(data), "UPLOADS_DIR": str(data / "uploads")}
    assert local({"OUTPUT_DIR": "/data/out/b", "UPLOADS_DIR": "/srv/up"}) == {
        "OUTPUT_DIR": str(data / "out" / "b"),
        "UPLOADS_DIR": str(scratch / "srv" / "up"),
    }
    assert local({"OUTPUT_DIR": "/database"})["OUTPUT_DIR"] == str(scratch / "database")


def test_a_file_output_url_maps_like_a_path_and_a_bucket_is_left_alone(tmp_path: Path) -> None:
    data, scratch = tmp_path / "data", tmp_path / "scratch"
    local = localise_paths(
        {"OUTPUT_URL": "file:///data/out", "UPLOADS_URL": "s3://bucket/uploads"},
        mount=PurePosixPath("/data"),
        data_dir=data,
        ephemeral=scratch,
    )
    assert local["OUTPUT_URL"] == f"file://{data / 'out'}"
    assert "UPLOADS_URL" not in local, "an s3:// location is passed on as it is"
