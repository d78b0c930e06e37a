"""Image transformation as storage-api and imgproxy do it (src/storage/renderer/image.ts)."""

from __future__ import annotations

import io
from typing import Any

# image transformation (storage-api src/storage/renderer/image.ts, imgproxy) ---------
IMG_SIZE_LIMITS = (1, 2500)  # storage-api's IMG_LIMITS_MIN_SIZE / IMG_LIMITS_MAX_SIZE defaults


def transformations(transform: dict[str, Any]) -> str:
    """ImageRenderer.applyTransformation(transform, keepOriginal=true): the string kept in
    the signed token, e.g. "height:200,width:200,resize:cover"."""

    def clamp(value: Any) -> int:
        return min(max(int(value), IMG_SIZE_LIMITS[0]), IMG_SIZE_LIMITS[1])

    segments = []
    if transform.get("height"):
        segments.append(f"height:{clamp(transform['height'])}")
    if transform.get("width"):
        segments.append(f"width:{clamp(transform['width'])}")
    if transform.get("width") or transform.get("height"):
        segments.append(f"resize:{transform.get('resize')}")  # "None" when absent, as in JS
    if transform.get("quality"):
        segments.append(f"quality:{int(transform['quality'])}")
    if transform.get("format") and transform["format"] != "origin":
        segments.append(f"format:{transform['format']}")
    return ",".join(segments)


def parse_transformations(text: str) -> dict[str, Any]:
    """ImageRenderer.setTransformationsFromString."""
    options: dict[str, Any] = {}
    for segment in filter(None, text.split(",")):
        name, _, value = segment.partition(":")
        if name in ("width", "height", "quality"):
            options[name] = int(value)
        elif name in ("resize", "format"):
            options[name] = value
    return options


def render(data: bytes, options: dict[str, Any]) -> tuple[bytes, str]:
    """What imgproxy answers for storage-api's options: `cover` (its default) fills the box
    and crops the centre, `contain` fits inside it, `fill` stretches; one side alone keeps
    the aspect ratio; never enlarges. The original format is kept (imgproxy may instead
    answer WebP/AVIF to a browser's Accept header)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format or "PNG"
        image = ImageOps.exif_transpose(image)
        w, h = image.size
        width, height = options.get("width"), options.get("height")
        mode = options.get("resize")
        if width and height:
            box = (min(width, w), min(height, h))
            if mode == "contain":
                image = ImageOps.contain(image, box)
            elif mode == "fill":
                image = image.resize(box)
            else:
                image = ImageOps.fit(image, box)
        elif width or height:
            scale = min((width or w) / w, (height or h) / h, 1.0)
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))))
        out = io.BytesIO()
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, format=fmt, quality=options.get("quality", 80))
    return out.getvalue(), Image.MIME.get(fmt, "application/octet-stream")
