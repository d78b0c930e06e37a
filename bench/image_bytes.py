"""4. Bytes to the captioner for a 12-megapixel photo (4000x3000, JPEG quality 90):
prepare_image with the default settings, and the bytes the HF stand-in received when the
service captioned the same object."""

from __future__ import annotations

import time

from app.core.config import CaptionSettings
from app.core.images import prepare_image
from bench.common import Environment, Result, photo_like

TARGET = 0.05


def run(env: Environment, quick: bool) -> list[Result]:
    original = photo_like(4000, 3000, seed=12)
    defaults = CaptionSettings(_env_file=None)  # type: ignore[call-arg]
    timings = []
    for _ in range(3 if quick else 10):
        t0 = time.perf_counter()
        prepared = prepare_image(
            original, max_side=defaults.caption_max_side, max_pixels=defaults.max_image_pixels
        )
        timings.append(time.perf_counter() - t0)
    with env.stack() as stack:
        stack.service()
        stack.insert_objects([original], 1)
        stack.wait_for_captions(1, timeout=30)
        sent = [c["n_bytes"] for c in stack.hf.calls if c["status"] == 200][0]
    ratio = sent / len(original)
    best = min(timings) * 1000
    return [
        Result(
            "4. bytes to the captioner (12 MP)",
            ratio * 100,
            "%",
            f"<= {TARGET * 100:.0f}%",
            ratio <= TARGET,
            f"{len(original) / 1e6:.2f} MB original -> {sent / 1e3:.1f} kB sent "
            f"({prepared.width}x{prepared.height}; prepare_image gives {len(prepared.data)} B); "
            f"prepare time {best:.0f} ms best / {sorted(timings)[len(timings) // 2] * 1000:.0f}"
            " ms median (one thread)",
            {"original": len(original), "sent": sent, "prepare_ms": timings},
        )
    ]
