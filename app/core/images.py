"""Decode an untrusted image safely and shrink it to what a captioning model needs."""

import io
import sys
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError, features

from app.core.errors import PermanentError

pillow_heif.register_heif_opener()  # HEIC/HEIF: what phones upload
Image.init()  # register every plugin so `formats=` can name them

# The one list of what gets captioned: each accepted mimetype and the Pillow format that
# decodes it. The database trigger queues exactly these (the service hands them over at
# start-up, captioner.config.mimetypes) and skips anything else with a reason. Raster
# formats only: no EPS (Ghostscript), no SVG, nothing that runs a helper program.
FORMAT_BY_MIMETYPE = {
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/pjpeg": "JPEG",
    "image/png": "PNG",
    "image/apng": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/tiff": "TIFF",
    "image/bmp": "BMP",
    "image/x-ms-bmp": "BMP",
    "image/x-icon": "ICO",
    "image/vnd.microsoft.icon": "ICO",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
    "image/heic-sequence": "HEIF",
    "image/heif-sequence": "HEIF",
    "image/avif": "AVIF",
    "image/avif-sequence": "AVIF",
}
if not features.check("avif"):  # Pillow built without libavif: AVIF is skipped, not failed
    FORMAT_BY_MIMETYPE = {m: f for m, f in FORMAT_BY_MIMETYPE.items() if f != "AVIF"}
MIMETYPES = tuple(FORMAT_BY_MIMETYPE)
# Decoding sniffs the bytes among all of these (a JPEG named .png still decodes).
SAFE_FORMATS = tuple(dict.fromkeys(FORMAT_BY_MIMETYPE.values()))
SUPPORTED = ", ".join(SAFE_FORMATS)
JPEG_QUALITY = 90
NATIVE_I16 = "I;16" if sys.byteorder == "little" else "I;16B"
EXAMPLES = Path(__file__).parent / "examples"
# Pillow only warns between its pixel limit and twice that: refuse instead, like above it.
warnings.simplefilter("error", Image.DecompressionBombWarning)


@dataclass(frozen=True)
class PreparedImage:
    """An RGB image no larger than the configured side, and its JPEG encoding."""

    pil: Image.Image
    data: bytes
    source_format: str

    @property
    def width(self) -> int:
        return self.pil.width

    @property
    def height(self) -> int:
        return self.pil.height


def prepare_image(data: bytes, *, max_side: int, max_pixels: int) -> PreparedImage:
    """Decode `data`, honour EXIF orientation, flatten to RGB and downscale.

    Blocking (Pillow): call it in a worker thread. Raises `PermanentError` with a reason
    for anything that is not a decodable raster image within the limits.
    """
    if not data:
        raise PermanentError("empty file (0 bytes)")
    # Pillow's own bomb guard is a process-wide setting: make it ours, so that a limit above
    # Pillow's default works and every refusal quotes the setting (one value per process).
    if max_pixels != Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image: Image.Image = Image.open(io.BytesIO(data), formats=SAFE_FORMATS)
    except UnidentifiedImageError:
        raise PermanentError(f"not a supported raster image ({SUPPORTED})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(None, max_pixels) from None
    except OSError as exc:
        raise PermanentError(f"corrupt image: {exc}") from None
    source_format = str(image.format)  # always set by Image.open
    if image.width * image.height > max_pixels:
        raise _too_many_pixels(image.size, max_pixels)
    try:
        image.draft(None, (max_side, max_side))  # JPEG: decode at reduced scale, much faster
        ImageOps.exif_transpose(image, in_place=True)
        image = _to_rgb(image)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(None, max_pixels) from None  # a later frame or tile
    except (OSError, ValueError, SyntaxError) as exc:
        raise PermanentError(f"corrupt or unreadable {source_format} image: {exc}") from None
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return PreparedImage(pil=image, data=out.getvalue(), source_format=source_format)


def _too_many_pixels(size: tuple[int, int] | None, limit: int) -> PermanentError:
    shown = f"{size[0]}x{size[1]} pixels" if size else f"more than {limit} pixels"
    return PermanentError(f"image too large: {shown} (limit MAX_IMAGE_PIXELS={limit})")


@cache
def probe_image() -> PreparedImage:
    """A small real picture (app/core/examples/house.jpg at 64 px), for checking a captioner."""
    with Image.open(EXAMPLES / "house.jpg") as image:
        small = image.convert("RGB")
    small.thumbnail((64, 64))
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=JPEG_QUALITY)
    return PreparedImage(pil=small, data=out.getvalue(), source_format="JPEG")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten any mode to 8-bit RGB; transparency (alpha or a transparent colour) becomes
    white."""
    if image.mode == "I;16N":  # Pillow converts it to I clipped at 255: read it as what it is
        image = Image.frombytes(NATIVE_I16, image.size, image.tobytes())
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        image = image.convert("I").point(lambda value: value * (1 / 256))
    if image.mode in ("P", "L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, "#fff")
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")
