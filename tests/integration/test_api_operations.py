"""Health, readiness, Prometheus metrics, the page, and what /openapi.json promises."""

from __future__ import annotations

import re

import httpx


async def test_healthz_says_ok(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"ok": True}


async def test_readyz_sees_postgresql_and_rabbitmq(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"ok": True, "checks": {"postgresql": "ok", "rabbitmq": "ok"}}


async def test_metrics_count_requests_by_route_template_and_time_them(
    api: httpx.AsyncClient,
) -> None:
    await api.get("/healthz")
    await api.get("/images/abc")
    await api.get("/images/def")
    await api.get("/no/such/page")

    text = (await api.get("/metrics")).text

    assert 'imagebatch_api_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert (
        'imagebatch_api_requests_total{method="GET",route="/images/{image_id}",status="404"} 2.0'
        in text
    )
    assert 'route="unmatched",status="404"} 1.0' in text
    assert re.search(
        r'imagebatch_api_request_duration_seconds_count\{method="GET",route="/healthz"\} 1\.0', text
    )
    assert "abc" not in text


async def test_metrics_count_published_jobs(api: httpx.AsyncClient) -> None:
    await api.post("/tasks", json={"url": "http://example.test/a.jpg"})

    text = (await api.get("/metrics")).text

    assert 'imagebatch_api_jobs_published_total{kind="task"} 1.0' in text


async def test_the_page_is_served_with_its_assets(api: httpx.AsyncClient) -> None:
    page = await api.get("/")
    script = await api.get("/static/app.js")
    style = await api.get("/static/style.css")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="upload-form"' in page.text
    assert 'src="static/app.js"' in page.text
    assert script.status_code == style.status_code == 200


async def test_unknown_paths_and_methods_get_the_same_error_shape(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nothing-here")
    wrong_method = await api.delete("/tasks")

    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}
    assert wrong_method.headers["allow"] == "POST"


async def test_405_names_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    response = await api.put("/batches")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_a_body_that_cannot_be_parsed_is_400_with_what_to_send(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post(
        "/tasks", content=b'{"url": "\x80"}', headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "send UTF-8 JSON" in response.json()["detail"]


CONTRACT = {
    ("get", "/healthz"): set(),
    ("get", "/readyz"): {"503"},
    ("post", "/enqueue"): {"401", "403", "422", "429", "503"},
    ("post", "/tasks"): {"400", "401", "403", "409", "422", "429", "503"},
    ("get", "/tasks/{task_id}"): {"401", "404", "422", "503"},
    ("post", "/uploads"): {"400", "401", "403", "413", "415", "422", "429", "503"},
    ("get", "/images"): {"401", "422", "503"},
    ("get", "/images/{image_id}"): {"401", "404", "422", "503"},
    ("get", "/images/{image_id}/thumbnail"): {"401", "404", "422", "503"},
    ("get", "/batches"): {"401", "403", "422", "503"},
    ("post", "/batches"): {"400", "401", "403", "404", "409", "422", "503"},
    ("get", "/batches/{name}"): {"401", "403", "404", "422", "503"},
    ("post", "/batches/{name}/retry"): {"401", "403", "404", "422", "503"},
    ("get", "/batches/{name}/items"): {"401", "403", "404", "422", "503"},
    ("get", "/batches/{name}/manifest"): {"401", "403", "404", "422", "503"},
    ("get", "/metrics"): set(),
}


async def test_openapi_documents_every_endpoint_with_its_error_responses(
    api: httpx.AsyncClient,
) -> None:
    schema = (await api.get("/openapi.json")).json()

    documented = {
        (method, path): set(op["responses"]) - {"200", "201", "202"}
        for path, item in schema["paths"].items()
        for method, op in item.items()
    }
    assert documented == CONTRACT
    upload = schema["paths"]["/uploads"]["post"]["requestBody"]["content"]
    [form] = upload.values()
    assert "multipart/form-data" in upload
    assert (
        "file"
        in schema["components"]["schemas"][form["schema"]["$ref"].split("/")[-1]]["properties"]
    )
    idempotency = schema["paths"]["/tasks"]["post"]["parameters"][0]
    assert (idempotency["name"], idempotency["in"]) == ("Idempotency-Key", "header")
