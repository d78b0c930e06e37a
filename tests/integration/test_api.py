"""POST /v1/captions against the real app, the Supabase stand-in and the HF stand-in."""

import httpx
import pytest

from tests.harness.hf_stub import Loading
from tests.support import TEST_SECRET, make_image

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}


def post_image(
    url: str,
    data: bytes,
    headers: dict[str, str] | None = AUTH,
    filename: str = "picture.png",
    content_type: str = "image/png",
) -> httpx.Response:
    files = {"image": (filename, data, content_type)}
    return httpx.post(url + "/v1/captions", files=files, headers=headers, timeout=30)


@pytest.fixture
def api(service_factory):
    return service_factory(webhook=False, worker_enabled=False)


@pytest.mark.parametrize(("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_caption_of_an_uploaded_image(api, hf, fmt, content_type):
    response = post_image(
        api.url,
        make_image((30, 60, 220), size=(320, 240), fmt=fmt),
        filename=f"blue.{fmt.lower()}",
        content_type=content_type,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["caption"] == "a 320x240 picture, mostly blue"
    assert body["model"] == api.settings.caption_model
    assert isinstance(body["elapsed_ms"], int) and body["elapsed_ms"] >= 0
    assert len(hf.calls) == 1


def test_api_keys_replace_the_webhook_secret(service_factory):
    running = service_factory(webhook=False, worker_enabled=False, api_keys=["key-1", "key-2"])

    assert (
        post_image(running.url, make_image(), {"Authorization": "Bearer key-2"}).status_code == 200
    )
    assert post_image(running.url, make_image()).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {"Authorization": "Bearer wrong"},
        {"Authorization": TEST_SECRET},
        {"Authorization": f"Basic {TEST_SECRET}"},
    ],
)
def test_missing_or_wrong_key_is_refused(api, hf, headers):
    response = post_image(api.url, make_image(), headers)

    assert response.status_code == 401
    assert "API key" in response.json()["detail"]
    assert response.headers["www-authenticate"] == "Bearer"
    assert hf.calls == []


def test_image_over_the_cap_is_refused_with_the_reason(service_factory, hf):
    running = service_factory(webhook=False, worker_enabled=False, max_image_bytes=2000)
    data = make_image(size=(400, 300), fmt="BMP")  # uncompressed: far over 2000 bytes

    response = post_image(running.url, data, filename="big.bmp", content_type="image/bmp")

    assert response.status_code == 413
    assert "MAX_IMAGE_BYTES=2000" in response.json()["detail"]
    assert hf.calls == []


def test_body_far_over_the_cap_is_refused_before_it_is_read(service_factory, hf):
    running = service_factory(webhook=False, worker_enabled=False, max_image_bytes=2000)

    response = post_image(running.url, b"\0" * 200_000)

    assert response.status_code == 413
    assert "image too large" in response.json()["detail"]


def test_bytes_that_are_not_an_image_are_refused_with_the_reason(api, hf):
    response = post_image(api.url, b"this is plain text, not a PNG")

    assert response.status_code == 422
    assert "not a supported raster image" in response.json()["detail"]
    assert hf.calls == []


def test_missing_image_field_is_a_validation_error(api):
    response = httpx.post(api.url + "/v1/captions", files={"other": ("a", b"x")}, headers=AUTH)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]


def test_loading_model_answers_503_with_retry_after(api, hf):
    hf.script(Loading(estimated_time=7.0))

    response = post_image(api.url, make_image())

    assert response.status_code == 503
    assert "loading" in response.json()["detail"]
    assert response.headers["retry-after"] == "7"


def test_openapi_describes_the_endpoint(api):
    assert httpx.get(api.url + "/openapi.json").status_code == 401
    assert httpx.get(api.url + "/docs").status_code == 404
    schema = httpx.get(api.url + "/openapi.json", headers=AUTH).json()
    operation = schema["paths"]["/v1/captions"]["post"]

    multipart = operation["requestBody"]["content"]["multipart/form-data"]
    form = schema["components"]["schemas"][multipart["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert form["required"] == ["image"]
    assert form["properties"]["image"]["contentMediaType"] == "application/octet-stream"
    assert multipart["encoding"]["image"]["contentType"] == "image/*"
    assert {"200", "401", "413", "422", "503"} <= set(operation["responses"])
    assert "Retry-After" in operation["responses"]["503"]["headers"]
    assert operation["security"] == [{"HTTPBearer": []}]
    result = schema["components"]["schemas"]["CaptionResult"]
    assert set(result["required"]) == {"caption", "model", "elapsed_ms"}


def test_chunked_body_is_cut_off_at_the_cap(service_factory, hf):
    running = service_factory(webhook=False, worker_enabled=False, max_image_bytes=2000)
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'

    def body():
        yield head
        for _ in range(8):
            yield b"\0" * 16_384

    response = httpx.post(
        running.url + "/v1/captions",
        content=body(),
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"},
    )

    assert response.status_code == 413
    assert "image too large" in response.json()["detail"]


def test_two_authorization_headers_are_refused(api, hf):
    headers = [("Authorization", f"Bearer {TEST_SECRET}"), ("Authorization", "Bearer other")]
    files = {"image": ("a.png", make_image(), "image/png")}

    response = httpx.post(api.url + "/v1/captions", files=files, headers=headers, timeout=30)

    assert response.status_code == 401
    assert hf.calls == []
