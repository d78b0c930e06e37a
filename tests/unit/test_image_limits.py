"""MAX_IMAGE_PIXELS is the decompression-bomb limit, both ways: above Pillow's own default
(~89 MP) when the setting says so, and every refusal quotes the setting."""

import io

import pytest
from PIL import Image

from app.core.errors import PermanentError
from app.core.images import prepare_image
from tests.integration.test_hostile_inputs import png_bomb

PILLOW_DEFAULT = 89_478_485  # Image.MAX_IMAGE_PIXELS as Pillow ships it
# app/core/images.py turns Pillow's bomb warning into an error; pytest resets warning filters per
# test, so say it again here to run as the service does.
pytestmark = pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")


def grey_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def test_a_limit_above_pillows_own_is_honoured():
    data = grey_jpeg(10_000, 10_000)  # 100 MP: over Pillow's default, under the setting

    image = prepare_image(data, max_side=512, max_pixels=150_000_000)

    assert image.width == image.height == 512


@pytest.mark.parametrize(
    ("size", "limit"), [(10_000, 50_000_000), (20_000, 50_000_000), (3_000, 1_000_000)]
)
def test_refusals_quote_the_setting(size, limit):
    with pytest.raises(PermanentError) as refused:
        prepare_image(png_bomb(size, size), max_side=512, max_pixels=limit)

    assert f"MAX_IMAGE_PIXELS={limit}" in refused.value.reason
    assert str(PILLOW_DEFAULT) not in refused.value.reason
    assert str(2 * PILLOW_DEFAULT) not in refused.value.reason


def test_an_image_at_the_limit_passes():
    image = prepare_image(png_bomb(1000, 1000), max_side=64, max_pixels=1_000_000)

    assert image.width == 64
