"""5. Local micro-batching: images/second of a BLIP-base-sized model through
app.captioning.local.LocalCaptioner, 16 concurrent requests, LOCAL_BATCH_SIZE=8 vs 1.

The model is BlipForConditionalGeneration with BLIP-base's shape (ViT-B/16 vision encoder
at 384 px, BERT-base text decoder, 30,524-token WordPiece vocabulary of placeholders) and
random weights: weights do not change the speed. Every caption is exactly 20 tokens:
max_new_tokens=20 through the settings, and the end-of-text token's output bias is set
very low so greedy decoding never stops early (LocalCaptioner passes no min_new_tokens).
Saved once under /tmp so reruns only load it. CPU only (no GPU on this machine)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from app.captioning.local import LocalCaptioner
from app.core.config import CaptionSettings
from app.core.images import prepare_image
from bench.common import Environment, Result, photo_like

MODEL_DIR = Path("/tmp/captioner-bench-blip-base")
TOKENS = 20
TARGET = 1.4
SPECIALS = {
    0: "[PAD]",
    100: "[UNK]",
    101: "[CLS]",
    102: "[SEP]",
    103: "[MASK]",
    30522: "[DEC]",
    30523: "[ENC]",
}


def build_model(directory: Path = MODEL_DIR) -> Path:
    if (directory / "config.json").exists():
        return directory
    import torch
    from transformers import (  # type: ignore[attr-defined]
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    directory.mkdir(parents=True, exist_ok=True)
    vocab = [SPECIALS.get(i, f"w{i}") for i in range(30524)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(directory, bos_token="[DEC]")
    config = BlipConfig()  # the defaults are BLIP-base: ViT-B/16 at 384 px, BERT-base
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # never emit [SEP] (end of text): fixed-length captions
        model.text_decoder.cls.predictions.bias[config.text_config.sep_token_id] = -1e4
    model.save_pretrained(directory)
    processor = BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


async def throughput(batch_size: int, requests: int) -> tuple[float, list[str], int]:
    settings = CaptionSettings(  # type: ignore[call-arg]
        _env_file=None,
        caption_backend="local",
        local_model=str(MODEL_DIR),
        local_batch_size=batch_size,
        max_new_tokens=TOKENS,
        local_device="cpu",
    )
    captioner = LocalCaptioner(settings)
    images = [
        prepare_image(photo_like(640, 480, seed=i), max_side=512, max_pixels=50_000_000)
        for i in range(requests)
    ]
    try:
        await captioner.load()
        await captioner.caption(images[0])  # warm-up, not timed
        batches_before = captioner.batches_run
        t0 = time.perf_counter()
        captions = await asyncio.gather(*(captioner.caption(image) for image in images))
        seconds = time.perf_counter() - t0
        return requests / seconds, captions, captioner.batches_run - batches_before
    finally:
        await captioner.aclose()


def run(env: Environment, quick: bool) -> list[Result]:
    import torch

    requests = 8 if quick else 16
    build_model()
    # best of two, interleaved: on a shared 2-core machine a single run varies by ~5%
    runs = [asyncio.run(throughput(size, requests)) for _ in range(2) for size in (8, 1)]
    on, captions_on, batches_on = max(runs[0::2])
    off, captions_off, batches_off = max(runs[1::2])
    lengths = {len(c.split()) for c in captions_on + captions_off}
    speedup = on / off
    return [
        Result(
            "5. local micro-batching speed-up",
            speedup,
            "x",
            f">= {TARGET}x",
            speedup >= TARGET,
            f"BLIP-base-sized, random weights, CPU ({torch.get_num_threads()} threads, no "
            f"GPU), {requests} concurrent requests: batch 8 {on:.2f} images/s "
            f"({batches_on} batches), batch 1 {off:.2f} images/s ({batches_off} batches); "
            f"caption lengths {sorted(lengths)} tokens",
            {"on": on, "off": off},
        )
    ]
