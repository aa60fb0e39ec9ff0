"""The web application in a real browser, against a live server and the simulator."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import Account, register, screenshot, sign_in
from tests.e2e.server import LiveServer


def storage_used(page: Any) -> int:
    page.goto("/account")
    bar = page.locator("#quota-bar[data-used-bytes]")
    bar.wait_for()
    return int(bar.get_attribute("data-used-bytes") or "0")


def wait_for_queue_status(page: Any, title: str, status: str, timeout: int = 40_000) -> Any:
    row = page.locator(".q-item", has=page.locator(".q-title", has_text=title)).first
    page.wait_for_function(
        """([title, status]) => [...document.querySelectorAll('.q-item')].some((row) =>
              row.querySelector('.q-title').textContent.includes(title) &&
              row.dataset.status === status)""",
        arg=[title, status],
        timeout=timeout,
    )
    return row


def test_video_journey_from_sign_up_to_bulk_delete(page: Any, server: LiveServer) -> None:
    # Register through the form (which signs in), sign out, then sign in again with ?next=.
    page.goto("/")
    assert "/login?next=%2F" in page.url
    page.click("#tab-register")
    page.fill("#register-username", "dana")
    page.fill("#register-email", "dana@example.com")
    page.fill("#register-password", "short")
    page.click("#register-form button[type=submit]")
    expect(page.locator("#register-form [data-field=password] .field-error")).to_be_visible()
    expect(page.locator("#register-password")).to_have_attribute("aria-invalid", "true")
    page.fill("#register-password", "a long enough password")
    page.click("#register-form button[type=submit]")
    page.wait_for_url(server.base_url + "/")
    page.click("#logout-button")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/library")
    page.wait_for_url(re.compile(r"/login\?next=%2Flibrary"))
    page.fill("#signin-identifier", "dana")
    page.fill("#signin-password", "wrong password")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-form [data-field=password] .field-error")).to_be_visible()
    page.fill("#signin-password", "a long enough password")
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(re.compile(r"/library$"))

    # The simulator banner is on, and the studio's form is generated from the catalog.
    page.goto("/")
    page.locator("#sim-banner").wait_for(state="visible")
    page.select_option("#model", "veo3-fast")
    params = page.locator("#params")
    for label in ("Duration", "Aspect ratio", "Resolution"):
        assert params.get_by_text(label, exact=True).is_visible()
    # A cross-field rule shows before submit: 1080p only for 8-second videos.
    params.locator(".param[data-param=duration] .segment", has_text="4 s").click()
    params.locator(".param[data-param=resolution] .segment", has_text="1080p").click()
    warning = params.locator(".param[data-param=resolution] .field-warning")
    assert "1080p is only available for 8-second videos" in warning.inner_text()
    assert page.locator("#submit").is_disabled()
    params.locator(".param[data-param=duration] .segment", has_text="8 s").click()
    assert page.locator("#submit").is_enabled()

    page.fill("#prompt", "A red fox running through fresh snow at dawn")
    page.click(".more > summary")
    page.fill("#title", "Fox run")
    with page.expect_response(lambda r: r.url.endswith("/api/v1/videos")) as created_info:
        page.click("#submit")
    created = created_info.value
    assert created.status == 202
    body = created.request.post_data_json
    assert body["params"] == {"duration": 8, "aspect_ratio": "16:9", "resolution": "1080p"}
    assert created.request.headers.get("x-csrf-token")

    # Live progress from the SSE stream until completed, with a toast.
    row = wait_for_queue_status(page, "Fox run", "completed")
    assert row.locator(".progress").get_attribute("aria-valuenow") == "100"
    page.locator(".toast", has_text="is ready").wait_for()

    # Open it in the library and play it: the <video> really decodes.
    row.locator("[data-act=open]").click()
    page.wait_for_url(re.compile(r"/library\?open="))
    page.locator(".drawer").wait_for()
    assert page.locator(".drawer .prompt-box").inner_text() == (
        "A red fox running through fresh snow at dawn"
    )
    page.keyboard.press("Escape")
    page.locator(".drawer").wait_for(state="detached")
    tile = page.locator(".tile", has_text="Fox run")
    tile.locator(".tile-play").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('.tile video'); return v && v.readyState >= 2; }",
        timeout=20_000,
    )
    assert page.evaluate("document.querySelector('.tile video').videoWidth") > 0

    # Rename inline, favourite, tag in the drawer.
    tile.locator(".tile-title").click()
    title_input = page.locator(".tile-title-input")
    title_input.fill("Arctic fox sprint")
    with page.expect_response(lambda r: r.request.method == "PATCH") as renamed:
        title_input.press("Enter")
    assert renamed.value.json()["title"] == "Arctic fox sprint"
    tile = page.locator(".tile", has_text="Arctic fox sprint")
    with page.expect_response(lambda r: r.request.method == "PATCH") as starred:
        tile.locator(".star").click()
    assert starred.value.json()["favorite"] is True
    assert tile.locator(".star").get_attribute("aria-pressed") == "true"
    tile.get_by_role("button", name=re.compile("^Details")).click()
    page.fill("#drawer-tags", "winter, wildlife")
    with page.expect_response(lambda r: r.request.method == "PATCH") as tagged:
        page.locator(".drawer button[type=submit]").click()
    assert tagged.value.json()["tags"] == ["winter", "wildlife"]
    page.locator(".drawer .icon-button[aria-label='Close details']").click()
    page.locator(".tile .tag", has_text="wildlife").wait_for()

    # Search (debounced, over the prompt), filters and sort mirrored in the URL.
    page.fill("#search", "snow")
    page.wait_for_url(re.compile(r"[?&]q=snow"))
    page.locator(".tile", has_text="Arctic fox sprint").wait_for()
    page.fill("#search", "volcano")
    page.wait_for_url(re.compile(r"[?&]q=volcano"))
    page.locator("#empty", has_text="No videos match").wait_for()
    page.goto("/library?q=arctic&fav=1&tag=wildlife&sort=title")
    page.locator(".tile", has_text="Arctic fox sprint").wait_for()
    assert page.input_value("#search") == "arctic"
    assert page.is_checked("#filter-favorite")
    assert page.input_value("#sort") == "title"

    used_before = storage_used(page)
    assert used_before > 0

    # Bulk delete with confirmation.
    page.goto("/library")
    page.locator(".tile", has_text="Arctic fox sprint").locator(".tile-select input").check()
    assert page.locator("#selection-count").inner_text() == "1 selected"
    page.click("#bulk-delete")
    dialog = page.locator("dialog[open]")
    assert "Delete 1 item?" in dialog.inner_text()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/tasks/bulk-delete")) as deleted:
        dialog.get_by_role("button", name="Delete").click()
    assert len(deleted.value.json()["deleted"]) == 1
    page.locator("#empty", has_text="No videos yet").wait_for()

    # The quota bar goes down.
    assert storage_used(page) < used_before
    screenshot(page, "account-after-delete")

    page.click("#logout-button")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/")
    assert "/login?next=%2F" in page.url


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


# Chromium does not hand file-backed request bodies to Playwright, so the page's multipart
# uploads are recorded as they leave `fetch` (the wrapper only reads, then sends the same body).
CAPTURE_FORM_DATA = """
window.__formPosts = [];
const originalFetch = window.fetch;
window.fetch = async (input, init) => {
  if (init && init.body instanceof FormData) {
    const parts = {};
    for (const [name, value] of init.body.entries()) {
      const bytes = value instanceof Blob
        ? new Uint8Array(await value.arrayBuffer()) : new TextEncoder().encode(value);
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      (parts[name] = parts[name] || []).push(btoa(binary));
    }
    window.__formPosts.push({ url: String(input), parts });
  }
  return originalFetch(input, init);
};
"""


def _form_posts(page: Any) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = page.evaluate("window.__formPosts")
    return [
        {
            "url": post["url"],
            "parts": {k: [base64.b64decode(v) for v in vs] for k, vs in post["parts"].items()},
        }
        for post in posts
    ]


def test_image_edit_with_uploaded_reference_and_painted_mask(page: Any, server: LiveServer) -> None:
    account = register(server.base_url)
    page.add_init_script(CAPTURE_FORM_DATA)
    sign_in(page, account, "/image")
    page.select_option("#model", "gpt-image-1")
    page.fill("#prompt", "Turn the sky into a sunset")
    page.set_input_files(
        ".refs input[type=file]",
        files=[
            {"name": "first.png", "mimeType": "image/png", "buffer": _png(320, 200)},
            {"name": "second.png", "mimeType": "image/png", "buffer": _png(64, 64)},
        ],
    )
    assert page.locator(".ref-item").count() == 2
    assert page.locator("#mode-chip").inner_text() == "Edit"
    canvas = page.locator("#mask-canvas")
    canvas.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#mask-canvas').width === 320")
    box = canvas.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    assert page.locator("#mask-state").inner_text() == "Mask painted"
    screenshot(page, "image-mask-painted")

    with page.expect_request(lambda r: r.url.endswith("/api/v1/images/edits")) as sent:
        page.click("#submit")
    assert sent.value.headers.get("content-type", "").startswith("multipart/form-data")
    (post,) = _form_posts(page)
    assert post["url"] == "/api/v1/images/edits"
    parts = post["parts"]
    assert len(parts["image[]"]) == 2
    assert parts["model"] == [b"gpt-image-1"]
    mask = Image.open(io.BytesIO(parts["mask"][0]))
    assert mask.size == (320, 200)
    alpha = mask.convert("RGBA").getchannel("A")
    assert alpha.getpixel((int(320 * 0.4), int(200 * 0.4))) == 0  # painted: may change
    assert alpha.getpixel((5, 195)) == 255  # not painted: kept
    assert sent.value.headers.get("x-csrf-token")

    wait_for_queue_status(page, "Turn the sky", "completed")
    page.goto("/library?kind=image")
    page.locator(".tile[data-status=completed]").first.wait_for()


def test_admin_changes_a_users_quota(
    browser: Any, page: Any, server: LiveServer, admin: Account
) -> None:
    member = register(server.base_url)
    # A member is refused the admin page.
    sign_in(page, member, "/account")
    assert page.locator("a[href='/admin']").is_hidden()
    response = page.goto("/admin")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_text("Administrators only")).to_be_visible()
    screenshot(page, "forbidden")

    admin_context = browser.new_context(
        base_url=server.base_url, viewport={"width": 1280, "height": 800}
    )
    try:
        admin_page = admin_context.new_page()
        sign_in(admin_page, admin, "/admin?tab=users")
        admin_page.fill("#user-search", member.username)
        row = admin_page.locator(f"tr[data-user='{member.username}']")
        row.wait_for()
        admin_page.wait_for_function("() => document.querySelectorAll('#users tr').length === 1")
        quota = row.locator("input[aria-label^='Quota of']")
        quota.fill("2.5 GB")
        with admin_page.expect_response(lambda r: r.url.endswith("/quota")) as changed:
            row.get_by_role("button", name="Save").click()
        assert changed.value.status == 200
        assert changed.value.json()["storage_quota_bytes"] == int(2.5 * 1024**3)
        admin_page.locator(".toast", has_text="2.5 GB").wait_for()
        screenshot(admin_page, "admin-users")
    finally:
        admin_context.close()

    with httpx.Client(base_url=server.base_url) as http:
        usage = http.get("/api/v1/storage/me", headers=member.headers).json()
    assert usage["quota_bytes"] == int(2.5 * 1024**3)
    page.goto("/account")
    expect(page.locator("#quota-total")).to_have_text("2.5 GB")


def test_mutation_without_csrf_header_is_refused(page: Any, server: LiveServer) -> None:
    account = register(server.base_url)
    sign_in(page, account)
    script = """async (withHeader) => {
        const headers = {"Content-Type": "application/json"};
        if (withHeader) {
            headers["X-CSRF-Token"] = document.cookie.match(/csrf_token=([^;]+)/)[1];
        }
        const response = await fetch("/api/v1/keys", {method: "POST", headers,
            body: JSON.stringify({name: "from the page"})});
        return {status: response.status, body: await response.json()};
    }"""
    refused = page.evaluate(script, False)
    assert refused["status"] == 403
    assert refused["body"]["error"]["code"] == "csrf_failed"
    accepted = page.evaluate(script, True)
    assert accepted["status"] == 201


def test_expired_session_keeps_the_create_form_draft(
    context: Any, page: Any, server: LiveServer
) -> None:
    account = register(server.base_url)
    sign_in(page, account)
    page.select_option("#model", "sora-2-pro")
    page.locator(".param[data-param=duration] .segment", has_text="15 s").click()
    page.fill("#prompt", "A lighthouse in a storm, waves crashing")
    page.click(".more > summary")
    page.fill("#title", "Lighthouse")
    context.clear_cookies()  # the session is gone, as after expiry
    page.click("#submit")
    page.wait_for_url(re.compile(r"/login\?next=%2F$"))
    page.fill("#signin-identifier", account.username)
    page.fill("#signin-password", account.password)
    page.click("#signin-form button[type=submit]")
    page.wait_for_url(server.base_url + "/")
    page.locator(".toast", has_text="draft was restored").wait_for()
    assert page.input_value("#model") == "sora-2-pro"
    assert page.input_value("#prompt") == "A lighthouse in a storm, waves crashing"
    assert page.input_value("#title") == "Lighthouse"
    assert (
        page.locator(".param[data-param=duration] .segment", has_text="15 s")
        .locator("input")
        .is_checked()
    )
    # Nothing secret went to localStorage.
    assert page.evaluate("Object.keys(localStorage).length") == 0


def test_422_details_are_placed_on_the_field(page: Any, server: LiveServer) -> None:
    account = register(server.base_url)
    sign_in(page, account)
    page.select_option("#model", "doubao-seedance-1-0-pro")
    page.fill("#prompt", "Rain on a window")
    # The form only offers valid values, so tamper with the request on its way out: what the
    # server refuses must come back next to the field it is about.
    page.route(
        "**/api/v1/videos",
        lambda route: route.continue_(
            post_data=route.request.post_data.replace('"ratio":"16:9"', '"ratio":"5:7"')
        ),
    )
    page.click("#submit")
    error = page.locator(".param[data-param=ratio] .field-error")
    error.wait_for(state="visible")
    assert "16:9" in error.inner_text()
    assert page.locator(".param[data-param=ratio] select").get_attribute("aria-invalid") == "true"


def test_screenshots_of_every_page(browser: Any, server: LiveServer, admin: Account) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        for prompt, kind, model in (
            ("Neon city timelapse", "videos", "sora-2"),
            ("Paper boat on a pond", "videos", "veo3"),
            ("Isometric cozy cabin", "images", "flux-pro"),
        ):
            created = http.post(
                f"/api/v1/{kind}?wait=60",
                json={"model": model, "prompt": prompt, "tags": ["demo"]},
                headers=admin.headers,
            )
            assert created.status_code == 200, created.text
        task_id = created.json()["id"]
    for scheme in ("light", "dark"):
        ctx = browser.new_context(
            base_url=server.base_url, viewport={"width": 1280, "height": 800}, color_scheme=scheme
        )
        try:
            page = ctx.new_page()
            page.goto("/login")
            screenshot(page, f"{scheme}-login")
            sign_in(page, admin)
            page.locator("#live-status[data-state=live]").wait_for()
            screenshot(page, f"{scheme}-studio")
            page.goto("/library")
            page.locator(".tile[data-status=completed]").first.wait_for()
            screenshot(page, f"{scheme}-library")
            page.goto(f"/library?kind=image&open={task_id}")
            page.locator(".drawer").wait_for()
            screenshot(page, f"{scheme}-library-drawer")
            page.goto("/image")
            page.locator("#live-status[data-state=live]").wait_for()
            screenshot(page, f"{scheme}-image")
            page.goto("/account")
            page.locator("#quota-bar[data-used-bytes]").wait_for()
            screenshot(page, f"{scheme}-account")
            page.goto("/admin")
            page.locator("#chart-daily svg").wait_for()
            screenshot(page, f"{scheme}-admin-overview")
            page.goto("/admin?tab=users")
            page.locator("#users tr[data-user]").first.wait_for()
            screenshot(page, f"{scheme}-admin-users")
            page.goto("/admin?tab=logs")
            page.locator(".log-row").first.wait_for()
            page.locator(".log-row").first.click()
            page.locator("#detail-response-body").wait_for()
            screenshot(page, f"{scheme}-admin-logs")
        finally:
            ctx.close()
