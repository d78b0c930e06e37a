"""Image preparation (app/core/images.py `prepare_image`): what a captioning model gets from
an untrusted upload (EXIF orientation applied, bounded size with the aspect ratio kept, a
JPEG) and the exact reason for each refusal."""

import io
import warnings

import pytest
from PIL import Image

from app.core.errors import PermanentError
from app.core.images import JPEG_QUALITY, SUPPORTED, _to_rgb, prepare_image

LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def refusal(data: bytes, max_pixels: int = LIMIT, max_side: int = 64) -> str:
    with pytest.raises(PermanentError) as refused:
        prepare_image(data, max_side=max_side, max_pixels=max_pixels)
    return refused.value.reason


def test_an_empty_file_is_refused_as_such():
    assert refusal(b"") == "empty file (0 bytes)"


@pytest.mark.parametrize("data", [b"hello, not an image", encode(Image.new("RGB", (4, 4)), "PPM")])
def test_bytes_outside_the_safe_formats_are_refused_naming_them(data):
    assert refusal(data) == f"not a supported raster image ({SUPPORTED})"
    assert "JPEG" in SUPPORTED and "PNG" in SUPPORTED and "PPM" not in SUPPORTED


def test_a_truncated_image_is_refused_as_corrupt_naming_its_format():
    whole = encode(Image.effect_noise((64, 64), 64).convert("RGB"))

    reason = refusal(whole[: len(whole) // 2])

    assert reason.startswith("corrupt or unreadable PNG image: ")
    assert "truncated" in reason


def bmp_with_bad_header() -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4)), "BMP"))
    data[28:30] = (7).to_bytes(2, "little")  # 7 bits per pixel: no such BMP
    return bytes(data)


def test_a_header_pillow_cannot_read_is_refused_as_corrupt():
    reason = refusal(bmp_with_bad_header())

    assert reason.startswith("corrupt image: ")
    assert len(reason) > len("corrupt image: ")


def test_a_size_over_the_limit_is_refused_with_the_size_and_the_setting():
    data = encode(Image.new("L", (2000, 1000)))

    with warnings.catch_warnings():  # Pillow only warns below twice its limit: we refuse
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        reason = refusal(data, max_pixels=1_999_999)

    assert reason == "image too large: 2000x1000 pixels (limit MAX_IMAGE_PIXELS=1999999)"


def test_an_image_exactly_at_the_limit_is_prepared():
    data = encode(Image.new("L", (2000, 1000)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = prepare_image(data, max_side=100, max_pixels=2_000_000)

    assert (image.width, image.height) == (100, 50)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [1001, 1500])  # over the limit, and over twice it
def test_pillows_bomb_guard_refuses_with_the_setting_and_no_size(side):
    data = encode(Image.new("L", (side, 1000)))

    reason = refusal(data, max_pixels=1_000_000)

    assert reason == "image too large: more than 1000000 pixels (limit MAX_IMAGE_PIXELS=1000000)"


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 480), (64, 48)), ((300, 900), (21, 64)), ((50, 30), (50, 30)), ((64, 1), (64, 1))],
)
def test_the_longest_side_is_bounded_and_the_aspect_ratio_kept(size, expected):
    prepared = prepare_image(
        encode(Image.new("RGB", size, (10, 200, 10))), max_side=64, max_pixels=LIMIT
    )

    assert (prepared.width, prepared.height) == expected
    assert prepared.pil.size == expected


def test_the_output_is_an_rgb_jpeg_of_the_prepared_picture_at_the_set_quality():
    source = Image.new("RGB", (200, 100), (200, 30, 30))
    prepared = prepare_image(encode(source, "WEBP"), max_side=100, max_pixels=LIMIT)

    assert prepared.source_format == "WEBP"
    assert prepared.pil.mode == "RGB"
    with Image.open(io.BytesIO(prepared.data)) as decoded:
        assert decoded.format == "JPEG"
        assert decoded.size == (100, 50)
        reference = Image.open(io.BytesIO(encode(prepared.pil, "JPEG", quality=JPEG_QUALITY)))
        assert decoded.quantization == reference.quantization
    assert JPEG_QUALITY == 90


def test_a_large_jpeg_is_prepared_within_the_bound():
    source = Image.linear_gradient("L").resize((2048, 1536)).convert("RGB")

    prepared = prepare_image(encode(source, "JPEG"), max_side=256, max_pixels=LIMIT)

    assert (prepared.width, prepared.height) == (256, 192)
    assert prepared.source_format == "JPEG"
    top, bottom = prepared.pil.getpixel((128, 2)), prepared.pil.getpixel((128, 189))
    assert top[0] < 20 and bottom[0] > 235  # the gradient runs top to bottom, as in the source


def oriented(orientation: int) -> bytes:
    """40x20: red left half, blue right half, with an EXIF orientation."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied():
    prepared = prepare_image(oriented(6), max_side=64, max_pixels=LIMIT)  # rotate 90° CW

    assert (prepared.width, prepared.height) == (20, 40)
    top, bottom = prepared.pil.getpixel((10, 5)), prepared.pil.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # red, once on the left, is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_an_upright_image_is_left_as_it_is():
    prepared = prepare_image(oriented(1), max_side=64, max_pixels=LIMIT)

    assert (prepared.width, prepared.height) == (40, 20)
    assert prepared.pil.getpixel((5, 10))[0] > 200


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 3) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("mode", ["I", "I;16", "I;16B", "I;16L", "I;16N"])
def test_every_wide_grey_mode_is_scaled_to_8_bits(mode):
    image = Image.new(mode, (4, 1))
    image.putdata([0, 256 * 64, 256 * 128, 65535])

    flat = _to_rgb(image)

    assert flat.mode == "RGB"
    assert [p[0] for p in flat.getdata()] == [0, 64, 128, 255]
    assert all(p[0] == p[1] == p[2] for p in flat.getdata())


def test_float_images_are_clipped_to_8_bits():
    image = Image.new("F", (3, 1))
    image.putdata([-5.0, 100.4, 300.0])

    flat = _to_rgb(image)

    assert flat.mode == "RGB"
    assert list(flat.getdata()) == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


@pytest.mark.parametrize(
    ("mode", "colour"),
    [
        ("1", (255, 255, 255)),
        ("L", (77, 77, 77)),
        ("CMYK", (0, 255, 255)),
        ("RGB", (1, 2, 3)),
        ("YCbCr", None),
        ("LAB", None),
        ("HSV", None),
    ],
)
def test_other_modes_become_rgb(mode, colour):
    source = (
        Image.new("RGB", (2, 2), (200, 30, 30)).convert(mode)
        if colour is None
        else (
            Image.new(
                mode, (2, 2), {"1": 1, "L": 77, "CMYK": (255, 0, 0, 0), "RGB": (1, 2, 3)}[mode]
            )
        )
    )

    flat = _to_rgb(source)

    assert flat.mode == "RGB"
    assert close(flat.getpixel((0, 0)), colour or (200, 30, 30), tolerance=8)


def test_a_palette_without_transparency_keeps_its_colours():
    image = Image.new("P", (2, 1))
    image.putpalette([200, 30, 30, 0, 0, 0] + [0] * 762)
    image.putdata([0, 1])

    assert list(_to_rgb(image).getdata()) == [(200, 30, 30), (0, 0, 0)]


def test_partial_alpha_is_blended_over_white():
    image = Image.new("RGBA", (1, 1), (0, 0, 0, 128))

    (pixel,) = _to_rgb(image).getdata()

    assert close(pixel, (127, 127, 127), tolerance=2)


def test_an_opaque_rgba_keeps_its_colour_and_a_transparent_one_is_white():
    image = Image.new("RGBA", (2, 1), (10, 20, 30, 255))
    image.putpixel((1, 0), (10, 20, 30, 0))

    assert list(_to_rgb(image).getdata()) == [(10, 20, 30), (255, 255, 255)]


@pytest.mark.parametrize(("mode", "key"), [("L", 77), ("RGB", (1, 2, 3))])
def test_a_transparent_colour_key_is_white_there(mode, key):
    image = Image.new(mode, (2, 1), key)
    image.putpixel((1, 0), 0 if mode == "L" else (0, 0, 0))
    data = encode(image, "PNG", transparency=key)  # a tRNS chunk

    prepared = prepare_image(data, max_side=64, max_pixels=LIMIT)

    assert list(prepared.pil.getdata()) == [(255, 255, 255), (0, 0, 0)]


def test_a_16_bit_transparent_key_never_hits_the_scaled_values():
    image = Image.new("I;16", (2, 1), 100)  # 100/65535: black, and 100 after scaling is not it
    image.putpixel((1, 0), 100 * 256)
    image.info["transparency"] = 100

    assert [p[0] for p in _to_rgb(image).getdata()] == [0, 100]
