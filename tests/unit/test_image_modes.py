"""Image preparation (app/core/images.py) flattens every mode to 8-bit RGB as a person sees
the picture: 16-bit samples scaled (not clipped), transparency over white."""

import io

import pytest
from PIL import Image

from app.core.images import _to_rgb, prepare_image

WHITE, RED = (255, 255, 255), (200, 30, 30)


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def pixels(data: bytes) -> list[tuple[int, int, int]]:
    image = prepare_image(data, max_side=512, max_pixels=10_000_000).pil
    assert image.mode == "RGB"
    return list(image.getdata())


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("value", [0, 256, 4096, 32768, 49152, 65535])
def test_16_bit_grey_is_scaled_to_8_bits(value):
    grey = round(value / 256)
    image = Image.new("I;16", (16, 16), value)

    (first, *_) = pixels(encode(image))

    assert close(first, (min(grey, 255),) * 3, tolerance=3)


def test_a_16_bit_gradient_keeps_its_ramp():
    image = Image.new("I;16", (256, 4))
    image.putdata([x * 257 for x in range(256)] * 4)  # 0 .. 65535 across the width

    row = pixels(encode(image))[:256]

    assert close(row[0], (0, 0, 0)) and close(row[-1], (255, 255, 255))
    assert close(row[128], (128, 128, 128))


def half_transparent(mode: str) -> Image.Image:
    """8x8 red, its left half fully transparent (and black there), in `mode`."""
    image = Image.new("RGBA", (8, 8), (*RED, 255))
    for x in range(4):
        for y in range(8):
            image.putpixel((x, y), (0, 0, 0, 0))
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(mode):
    row = pixels(encode(half_transparent(mode)))[:8]

    assert all(close(pixel, WHITE) for pixel in row[:4])
    grey = round(0.299 * RED[0] + 0.587 * RED[1] + 0.114 * RED[2])
    expected = RED if mode == "RGBA" else (grey,) * 3
    assert all(close(pixel, expected) for pixel in row[4:])


def test_palette_with_alpha_is_flattened_over_white_too():
    """PA (palette + alpha) has no file format of its own; Pillow makes it in memory."""
    image = _to_rgb(half_transparent("PA"))

    row = list(image.getdata())[:8]
    assert image.mode == "RGB"
    assert all(close(pixel, WHITE) for pixel in row[:4])
    assert all(close(pixel, RED, tolerance=40) for pixel in row[4:])


def test_a_palette_with_a_transparent_index_is_white_there():
    image = Image.new("P", (4, 1))
    image.putpalette([*RED, 0, 0, 0] + [0] * 762)
    image.putdata([0, 1, 0, 1])
    image.info["transparency"] = 1

    assert [close(p, WHITE) for p in pixels(encode(image))] == [False, True, False, True]
