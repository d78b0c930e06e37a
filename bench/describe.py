"""What a description costs next to a plain caption (README "What you get for each image").

`python -m bench.describe [--images N] [--skip-local]`:

1. Hosted, through the HF stand-in's router (tests/harness/hf_stub.py) as users configure a
   vision-language model (CAPTION_BACKEND=chat, a Hub id): for N photo-like 640x480 JPEGs,
   the plain caption call (`caption`) against the structured call (`describe`: every field,
   the schema as `response_format`), and the same with a provider that refuses
   `response_format` (the schema goes in the prompt). Bytes sent are the request bodies the
   stand-in received; tokens requested the body's `max_tokens`; time the median wall time of
   one image through `caption_image` / `describe_image` (the stand-in answers at once, so
   this is the service's own cost plus HTTP on loopback). Also the calls an image takes when
   the model misses the schema once (2) and twice (3: the plain sentence).
2. Local, the evidence for the local default: BLIP-base and Florence-2-base with their real
   dimensions and zeroed weights (weights do not change the speed), CPU, one image, fixed
   output lengths (min_new_tokens = max_new_tokens): BLIP's caption (20 tokens) against
   Florence-2's caption (20), detailed caption (60) and OCR (10); parameters counted.

Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from app.captioning import caption_image, describe_image
from app.captioning.hf import HuggingFaceCaptioner
from app.core.config import CaptionSettings
from bench.common import photo_like
from tests.harness.hf_stub import Content, HuggingFaceStandIn

VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


def hosted_settings(hf: HuggingFaceStandIn) -> CaptionSettings:
    return CaptionSettings(  # type: ignore[call-arg]
        _env_file=None,
        hf_token="hf_bench",
        caption_backend="chat",
        caption_model=VLM,
        hf_endpoint=hf.url,
        hf_router_url=hf.url,
    )


async def timed(
    images: list[bytes], call: Callable[[bytes], Awaitable[Any]]
) -> tuple[float, list[Any]]:
    times, results = [], []
    for data in images:
        started = time.perf_counter()
        results.append(await call(data))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), results


def request_stats(hf: HuggingFaceStandIn, since: int) -> tuple[float, int, int]:
    """(mean request bytes, max_tokens asked, calls) of the chat calls after `since`."""
    calls = [c for c in hf.calls[since:] if c["path"].endswith("/chat/completions")]
    sizes = [c["n_bytes"] for c in calls if c["status"] == 200]
    tokens = {json.loads(c["body"]).get("max_tokens") for c in calls if c["status"] == 200}
    return statistics.mean(sizes), max(tokens), len(calls)


async def hosted(count: int) -> list[tuple[str, str, str, str, str]]:
    rows = []
    images = [photo_like(640, 480, seed=i) for i in range(count)]
    with HuggingFaceStandIn() as hf:
        hf.add_model(VLM, {"together": "conversational"})
        settings = hosted_settings(hf)
        captioner = HuggingFaceCaptioner(settings)
        try:
            await caption_image(images[0], captioner, settings)  # route resolved, warm
            for name, call in (
                ("plain caption (`caption`)", lambda d: caption_image(d, captioner, settings)),
                (
                    "every field (`describe`, response_format)",
                    lambda d: describe_image(d, captioner, settings),
                ),
            ):
                since = len(hf.calls)
                ms, _ = await timed(images, call)
                size, tokens, calls = request_stats(hf, since)
                rows.append(
                    (
                        name,
                        f"{size / 1000:.1f} kB",
                        str(tokens),
                        f"{calls / count:.0f}",
                        f"{ms:.1f}",
                    )
                )
            hf.no_json_schema = {"together"}
            await describe_image(images[0], captioner, settings)  # the one refusal
            since = len(hf.calls)
            ms, _ = await timed(images, lambda d: describe_image(d, captioner, settings))
            size, tokens, calls = request_stats(hf, since)
            rows.append(
                (
                    "every field, schema in the prompt (route refuses response_format)",
                    f"{size / 1000:.1f} kB",
                    str(tokens),
                    f"{calls / count:.0f}",
                    f"{ms:.1f}",
                )
            )
            for misses, label in ((1, "one miss (prose), then a fit"), (2, "two misses")):
                since = len(hf.calls)
                for _ in range(count):
                    hf.script(*[Content("Sure! Here is a description.")] * misses)
                    await describe_image(images[0], captioner, settings)
                size, tokens, calls = request_stats(hf, since)
                rows.append(
                    (
                        f"every field, {label}",
                        f"{size / 1000:.1f} kB",
                        str(tokens),
                        f"{calls / count:.0f}",
                        "—",
                    )
                )
        finally:
            await captioner.aclose()
    return rows


def local() -> Iterator[tuple[str, str, str, str]]:
    """Rows as they are measured. Weights are left as allocated and zeroed (no random init:
    it takes minutes on a shared CPU, and values do not change the time)."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        Florence2Config,
        Florence2ForConditionalGeneration,
    )
    from transformers.initialization import no_init_weights

    torch.set_num_threads(os.cpu_count() or 1)
    # pixel values in the processors' shapes: 384 px (BLIP), 768 px (Florence-2)
    with no_init_weights():
        blip = _zeroed(BlipForConditionalGeneration(BlipConfig()))  # BLIP-base's defaults
    blip_params = sum(p.numel() for p in blip.parameters())
    pixels = torch.rand(1, 3, 384, 384)
    blip_ms = _generate_ms(blip, {"pixel_values": pixels}, 20)
    yield (
        "BLIP-base: caption (20 tokens)",
        f"{blip_params / 1e6:.0f} M",
        f"{blip_ms:.0f}",
        "caption, alt text",
    )
    del blip
    with no_init_weights():
        florence = _zeroed(
            Florence2ForConditionalGeneration(_florence_base_config(Florence2Config))
        )
    florence_params = sum(p.numel() for p in florence.parameters())
    image_tokens = (768 // 32) ** 2 + 1  # DaViT strides 4·2·2·2 = 32, plus the pooled token
    total = 0.0
    for task, tokens, words in (
        ("<CAPTION>", 20, 7),
        ("<DETAILED_CAPTION>", 60, 9),
        ("<OCR>", 10, 7),
    ):
        ids = [florence.config.image_token_id] * image_tokens + [0] + [100] * words + [2]
        inputs = {"pixel_values": torch.rand(1, 3, 768, 768), "input_ids": torch.tensor([ids])}
        ms = _generate_ms(florence, inputs, tokens)
        total += ms
        yield (
            f"Florence-2-base: {task} ({tokens} tokens)",
            f"{florence_params / 1e6:.0f} M",
            f"{ms:.0f}",
            {
                "<CAPTION>": "caption, alt text",
                "<OCR>": "text in the image",
                "<DETAILED_CAPTION>": "description",
            }[task],
        )
    yield (
        "Florence-2-base: all three tasks",
        f"{florence_params / 1e6:.0f} M",
        f"{total:.0f}",
        "caption, alt text, description, text in the image",
    )


def _zeroed(model: Any) -> Any:
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.zero_()
    return model.eval()


def _florence_base_config(config_class: Any) -> Any:
    """Florence-2-base's dimensions (florence-community/Florence-2-base config.json)."""
    return config_class(
        text_config={
            "model_type": "bart",
            "vocab_size": 51289,
            "d_model": 768,
            "encoder_layers": 6,
            "decoder_layers": 6,
            "encoder_attention_heads": 12,
            "decoder_attention_heads": 12,
            "encoder_ffn_dim": 3072,
            "decoder_ffn_dim": 3072,
            "max_position_embeddings": 1024,
        },
        vision_config={"projection_dim": 768},
        image_token_id=51288,
    )


def _generate_ms(model: Any, inputs: dict[str, Any], tokens: int, rounds: int = 2) -> float:
    import torch

    times = []
    with torch.inference_mode():
        for _ in range(rounds):
            started = time.perf_counter()
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, num_beams=1)
            times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("| call | request body | max_tokens | calls per image | median ms per image |")
    print("|---|---|---|---|---|")
    for row in asyncio.run(hosted(args.images)):
        print("| " + " | ".join(row) + " |")
    if not args.skip_local:
        print()
        print("| local model, CPU, zeroed weights | parameters | best of 2, ms | fills |")
        print("|---|---|---|---|")
        for local_row in local():
            print("| " + " | ".join(local_row) + " |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
