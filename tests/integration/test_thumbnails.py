"""The storage stand-in's image transformation, as storage-api serves it (signed URL with
`transform` → /render/image/sign/...), driven through the real supabase-py client."""

import io

import httpx
import jwt
import pytest
from PIL import Image
from supabase import create_client

from tests.harness.supabase_stub import create_bucket


def jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 160, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def files(supabase):
    create_bucket(supabase.db_url, "images")
    bucket = create_client(supabase.url, supabase.service_key).storage.from_("images")
    bucket.upload("wide.jpg", jpeg((800, 400)), {"content-type": "image/jpeg"})
    bucket.upload("tiny.jpg", jpeg((40, 30)), {"content-type": "image/jpeg"})
    return bucket


def rendered(files, name: str, **transform) -> tuple[str, Image.Image]:
    url = files.create_signed_url(name, 60, {"transform": transform})["signedURL"]
    answer = httpx.get(url)
    assert answer.status_code == 200, answer.text
    return url, Image.open(io.BytesIO(answer.content))


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        ({"width": 200, "height": 200, "resize": "cover"}, (200, 200)),
        ({"width": 200, "height": 200}, (200, 200)),  # cover is imgproxy's default
        ({"width": 200, "height": 200, "resize": "contain"}, (200, 100)),
        ({"width": 200, "height": 200, "resize": "fill"}, (200, 200)),
        ({"width": 100}, (100, 50)),
        ({"height": 100}, (200, 100)),
        ({"width": 99_999}, (800, 400)),  # clamped, and never enlarged
    ],
)
def test_transform_resizes_like_imgproxy(files, transform, size):
    url, image = rendered(files, "wide.jpg", **transform)
    assert "/storage/v1/render/image/sign/images/wide.jpg?token=" in url
    assert image.size == size and image.format == "JPEG"


def test_small_images_are_not_enlarged_and_the_token_names_the_transformations(files, supabase):
    url, image = rendered(files, "tiny.jpg", width=240, height=240, resize="cover")
    assert image.size == (40, 30)
    claims = jwt.decode(url.split("token=")[1], supabase.jwt_secret, algorithms=["HS256"])
    assert claims["url"] == "images/tiny.jpg"
    assert claims["transformations"] == "height:240,width:240,resize:cover"


def test_tokens_are_checked_and_transformation_can_be_off(files, supabase):
    url = files.create_signed_url("wide.jpg", 60, {"transform": {"width": 50}})["signedURL"]
    other = url.replace("/wide.jpg?", "/tiny.jpg?")
    assert httpx.get(other).json()["code"] == "InvalidSignature"
    assert httpx.get(url.split("?")[0] + "?token=forged").json()["code"] == "InvalidJWT"

    supabase.image_transformation = False  # storage-api without ENABLE_IMAGE_TRANSFORMATION
    plain = files.create_signed_url("wide.jpg", 60, {"transform": {"width": 50}})["signedURL"]
    assert "/storage/v1/object/sign/images/wide.jpg?token=" in plain
    assert Image.open(io.BytesIO(httpx.get(plain).content)).size == (800, 400)
