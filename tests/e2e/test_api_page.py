"""The web page as a person uses it, in headless Chromium (Debian's, driven by playwright): give
the api's token when the page asks for it, choose a photo, upload it, watch its thumbnail appear
without reloading, add a URL, see a batch's progress and retry its failed items. A screenshot is
saved under the test's temp dir."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.async_api import ConsoleMessage, async_playwright, expect

from imagebatch.core.settings import CommonSettings
from imagebatch.devservers.service_process import api_process, worker_process
from tests.support.image_server import ImageServer
from tests.support.k8s import KubeCluster
from tests.support.photos import photos

pytestmark = [pytest.mark.slow, pytest.mark.k8s]

CHROMIUM = "/usr/bin/chromium"
TOKEN = "page-token-0123456789abcdef"
REFUSED = "the server responded with a status of 401"
"""Chromium's console line for each request the api refused before the token was given."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def show_progress(kube_cluster: KubeCluster, namespace: str, name: str) -> None:
    """Write the status an operator would, halfway through the batch."""
    status = {
        "phase": "Running",
        "total": 6,
        "published": 6,
        "succeeded": 3,
        "failed": 1,
        "queued": 2,
        "workers": 2,
        "progress": "4/6",
    }
    kube_cluster.kubectl(
        "patch", "ib", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


async def test_upload_a_photo_and_watch_its_thumbnail_appear(
    messaging: CommonSettings, tmp_path: Path, kube_cluster: KubeCluster, namespace: str
) -> None:
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos((1024, 768))[2])
    screenshot = tmp_path / "page.png"
    console_errors: list[str] = []
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKEN} {namespace}\n")

    async with (
        ImageServer() as images,
        api_process(
            messaging,
            tmp_path,
            KUBECONFIG=kube_cluster.kubeconfig,
            KUBE_NAMESPACE=namespace,
            AUTH_MODE="token",
            AUTH_TOKENS_FILE=tokens,
        ) as (base, _api),
        worker_process(messaging, tmp_path),
        httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
        async_playwright() as playwright,
    ):
        created = await client.post(
            "/batches",
            json={
                "metadata": {"name": "holiday-photos"},
                "spec": {"source": {"urls": [images.url(f"/photo/{n}.jpg") for n in range(6)]}},
            },
        )
        assert created.status_code == 201
        show_progress(kube_cluster, namespace, "holiday-photos")
        for n in (4, 5, 6):
            await client.post("/tasks", json={"url": images.url(f"/photo/{n}.jpg")})

        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and REFUSED not in message.text:
                console_errors.append(message.text)

        page.on("console", on_console)
        await page.goto(base + "/")
        await expect(page.locator("h1")).to_have_text("ImageBatch")
        await expect(page.locator("#token-note")).to_have_text("The api needs a token.")
        await page.fill("#token", TOKEN)
        await page.click("#token-form button[type=submit]")
        await expect(page.locator("#token-note")).to_have_text("Token saved in this browser.")

        await page.set_input_files("#file", str(photo))
        await page.click("#upload-button")

        thumbnail = page.locator("li.tile", has_text="coffee.jpg").locator("img")
        await expect(thumbnail).to_be_visible(timeout=30_000)
        await page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=await thumbnail.element_handle()
        )
        await expect(page.locator("#upload-status")).to_have_text(
            "Thumbnail of coffee.jpg is ready.", timeout=10_000
        )
        await expect(page.locator('[data-count="completed"]')).to_have_text("4", timeout=30_000)

        await page.fill("#task-url", images.url("/photo/0.jpg"))
        await page.click("#task-form button")
        await expect(page.locator("#task-status")).to_contain_text(
            "Thumbnail of 0.jpg is ready", timeout=30_000
        )
        await expect(page.locator('[data-count="completed"]')).to_have_text("5", timeout=10_000)

        batch = page.locator('li.batch[data-name="holiday-photos"]')
        await expect(batch.locator(".phase")).to_have_text("Running")
        await expect(batch.locator(".numbers")).to_contain_text("4/6")
        await expect(batch.locator('[role="progressbar"]')).to_have_attribute(
            "aria-valuenow", "66.7"
        )
        await batch.get_by_role("button", name="Retry failed").click()
        note = batch.locator(".retry-note")
        await expect(note).to_contain_text("Retry requested (", timeout=10_000)
        requested = (await note.text_content() or "").split("(", 1)[1].rstrip(").")
        natural = await thumbnail.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        await page.screenshot(path=str(screenshot), full_page=True)
        await browser.close()

    annotation = kube_cluster.kubectl(
        "get", "ib", "holiday-photos", "-n", namespace,
        "-o", r"jsonpath={.metadata.annotations.imagejobs\.io/retry-failed}",
    ).stdout  # fmt: skip
    print(f"screenshot: {screenshot}")
    assert annotation == requested, "the button asked the operator to retry the failed item"
    assert natural == [256, 192]
    assert screenshot.stat().st_size > 10_000
    assert console_errors == []
