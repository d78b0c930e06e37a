"""The local transformers backend, against tiny randomly initialised models built here."""

import asyncio
import io
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.captioning import build_captioner, local
from app.captioning.local import LocalCaptioner, ModelNotAvailable
from app.core.config import Settings
from app.core.errors import ConfigurationError, RetryableError
from app.core.images import PreparedImage, prepare_image
from tests.harness.waiting import wait_until
from tests.tiny_blip import build_tiny_vit_gpt2

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture(scope="session")
def vit_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vit_gpt2(tmp_path_factory.mktemp("tiny-vit-gpt2"))


def make_settings(model: Path | str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "supabase_url": "http://x",
        "supabase_secret_key": "sb_secret_k",
        "webhook_secret": "s",
        "caption_backend": "local",
        "hf_token": None,
        "local_model": str(model) if model is not None else None,
        "local_device": "cpu",
        "local_dtype": "auto",
        "max_new_tokens": 5,
        "num_beams": 1,
        "local_batch_size": 4,
        "local_batch_wait_ms": 20,
    }
    return Settings(**{**values, **overrides})


def noise_image(seed: int) -> PreparedImage:
    """32x32 random pixels, as PNG (lossless) so the model sees exactly these pixels."""
    rng = random.Random(seed)
    pixels = bytes(rng.randrange(256) for _ in range(32 * 32 * 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (32, 32), pixels).save(out, format="PNG")
    return prepare_image(out.getvalue(), max_side=512, max_pixels=1_000_000)


IMAGES = [noise_image(seed) for seed in range(8)]


def run(captioner: LocalCaptioner, coroutine_factory: Any) -> Any:
    async def main() -> Any:
        try:
            return await coroutine_factory()
        finally:
            await captioner.aclose()

    return asyncio.run(main())


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    real = local.generate_captions

    def spy(loaded: Any, images: list[Any], *args: Any) -> list[str]:
        if all(image.size == (32, 32) for image in images):  # not the warm-up's sample
            sizes.append(len(images))
        return real(loaded, images, *args)

    monkeypatch.setattr(local, "generate_captions", spy)
    return sizes


def test_caption_is_a_non_empty_string(tiny_blip: Path) -> None:
    captioner = LocalCaptioner(make_settings(tiny_blip))
    assert captioner.model == str(tiny_blip)
    assert not captioner.loaded
    text = run(captioner, lambda: captioner.caption(IMAGES[0]))
    assert isinstance(text, str) and text
    assert text == text.strip()
    assert (captioner.batches_run, captioner.images_captioned) == (1, 1)


def test_model_loads_once_for_concurrent_callers(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real = local.load_model

    def counting(name: str, placement: local.Placement) -> Any:
        loads.append(name)
        return real(name, placement)

    monkeypatch.setattr(local, "load_model", counting)
    captioner = LocalCaptioner(make_settings(tiny_blip))

    async def scenario() -> list[str]:
        results = await asyncio.gather(*(captioner.caption(image) for image in IMAGES))
        await captioner.load()
        return list(results)

    results = run(captioner, scenario)
    assert len(results) == 8
    assert loads == [str(tiny_blip)]


def test_explicit_load(tiny_blip: Path) -> None:
    captioner = LocalCaptioner(make_settings(tiny_blip))
    run(captioner, captioner.load)
    assert captioner.batches_run == 0
    captioner = LocalCaptioner(make_settings(tiny_blip))

    async def scenario() -> bool:
        await captioner.load()
        return captioner.loaded

    assert run(captioner, scenario)


def test_concurrent_captions_share_batches_and_each_caller_gets_its_own(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_by_one = LocalCaptioner(make_settings(tiny_blip, local_batch_size=1))

    async def sequential() -> list[str]:
        return [await one_by_one.caption(image) for image in IMAGES]

    expected = run(one_by_one, sequential)
    assert len(set(expected)) >= 6, "the tiny model must tell the test images apart"

    sizes = record_batches(monkeypatch)
    # A long wait: the batches can only have been cut by size.
    captioner = LocalCaptioner(
        make_settings(tiny_blip, local_batch_size=4, local_batch_wait_ms=60_000)
    )

    async def together() -> tuple[list[str], float]:
        await captioner.load()
        started = time.perf_counter()
        results = await asyncio.gather(*(captioner.caption(i) for i in IMAGES))
        return results, time.perf_counter() - started

    results, seconds = run(captioner, together)
    assert seconds < 50  # not the minute's wait
    assert results == expected
    assert sizes == [4, 4]
    assert (captioner.batches_run, captioner.images_captioned) == (2, 8)


def test_batch_size_one_runs_one_batch_per_image(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(monkeypatch)
    captioner = LocalCaptioner(make_settings(tiny_blip, local_batch_size=1))
    run(captioner, lambda: asyncio.gather(*(captioner.caption(i) for i in IMAGES[:3])))
    assert sizes == [1, 1, 1]
    assert (captioner.batches_run, captioner.images_captioned) == (3, 3)


def test_a_partial_batch_runs_after_the_wait(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = record_batches(monkeypatch)
    captioner = LocalCaptioner(make_settings(tiny_blip, local_batch_size=8, local_batch_wait_ms=30))
    results = run(captioner, lambda: asyncio.gather(*(captioner.caption(i) for i in IMAGES[:3])))
    assert len(results) == 3
    assert sizes == [3]


def test_the_event_loop_keeps_running_during_load_and_generate(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Load and generate block until the event loop itself releases them: had either run on
    the loop's thread, the loop could not have, and the wait would time out (no clock bound)."""
    real_load, real_generate = local.load_model, local.generate_captions
    started = {stage: threading.Event() for stage in ("load", "generate")}
    released = {stage: threading.Event() for stage in ("load", "generate")}
    seen: dict[str, bool] = {}

    def held(stage: str, real: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            started[stage].set()
            seen[stage] = released[stage].wait(30)
            return real(*args)

        return wrapper

    monkeypatch.setattr(local, "load_model", held("load", real_load))
    monkeypatch.setattr(local, "generate_captions", held("generate", real_generate))
    captioner = LocalCaptioner(make_settings(tiny_blip))

    async def scenario() -> str:
        task = asyncio.create_task(captioner.caption(IMAGES[0]))
        for stage in ("load", "generate"):
            await asyncio.to_thread(started[stage].wait, 30)  # the loop runs meanwhile
            released[stage].set()
        return await task

    assert run(captioner, scenario)
    assert seen == {"load": True, "generate": True}


def test_an_exception_in_a_batch_reaches_every_caller(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> list[str]:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(local, "generate_captions", broken)
    captioner = LocalCaptioner(make_settings(tiny_blip, local_batch_size=4))
    results = run(
        captioner,
        lambda: asyncio.gather(*(captioner.caption(i) for i in IMAGES[:3]), return_exceptions=True),
    )
    assert len(results) == 3
    for result in results:
        assert isinstance(result, RetryableError)
        assert "out of memory" in result.reason
    assert (captioner.batches_run, captioner.images_captioned) == (0, 0)


def test_close_fails_waiting_callers(tiny_blip: Path) -> None:
    captioner = LocalCaptioner(
        make_settings(tiny_blip, local_batch_size=8, local_batch_wait_ms=10_000)
    )

    async def scenario() -> list[BaseException | str]:
        await captioner.load()
        tasks = [asyncio.create_task(captioner.caption(i)) for i in IMAGES[:2]]
        for _ in range(1000):  # until both wait in the batch (no clock involved)
            if len(captioner._batcher._pending) == 2:
                break
            await asyncio.sleep(0)
        assert len(captioner._batcher._pending) == 2
        await captioner.aclose()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, RetryableError) for result in results)
    assert not captioner.loaded


@pytest.mark.parametrize(
    "model",
    ["{tmp}/does-not-exist", "nobody-here/no-such-captioner-model"],
    ids=["missing-directory", "not-in-cache"],
)
def test_a_missing_model_says_how_to_provide_one(model: str, tmp_path: Path) -> None:
    name = model.format(tmp=tmp_path)
    captioner = LocalCaptioner(make_settings(None, caption_model=name))
    assert captioner.model == name

    with pytest.raises(ModelNotAvailable) as not_available:
        run(captioner, captioner.load)
    with pytest.raises(ConfigurationError) as configuration:
        run(captioner, lambda: captioner.caption(IMAGES[0]))
    assert configuration.value.setting == "LOCAL_MODEL"
    for message in (str(not_available.value), configuration.value.reason):
        assert name in message
        assert "LOCAL_MODEL" in message and "HF_TOKEN" in message
        assert "Traceback" not in message and "huggingface-cli" not in message
        fetch = ("captioner fetch-model", "make model", f"hf download {name}", "HF_HOME")
        hub_id = not name.startswith("/")
        assert all((advice in message) == hub_id for advice in fetch), message
    assert "(change LOCAL_MODEL)" not in configuration.value.reason
    assert not captioner.loaded


def test_a_directory_without_a_model(tmp_path: Path) -> None:
    captioner = LocalCaptioner(make_settings(tmp_path))
    with pytest.raises(ModelNotAvailable, match="LOCAL_MODEL"):
        run(captioner, captioner.load)


def test_vit_gpt2_style_model(vit_gpt2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = record_batches(monkeypatch)
    captioner = LocalCaptioner(make_settings(vit_gpt2_dir, local_batch_size=4))
    results = run(captioner, lambda: asyncio.gather(*(captioner.caption(i) for i in IMAGES[:4])))
    assert all(isinstance(text, str) and text for text in results)
    assert sizes == [4]


def test_build_captioner_picks_the_local_backend(tiny_blip: Path) -> None:
    assert isinstance(build_captioner(make_settings(tiny_blip)), LocalCaptioner)
    auto = make_settings(tiny_blip, caption_backend="auto", hf_token=None)
    assert isinstance(build_captioner(auto), LocalCaptioner)


def test_a_model_that_appears_later_is_picked_up(tiny_blip: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    captioner = LocalCaptioner(make_settings(target))

    async def scenario() -> str:
        with pytest.raises(ConfigurationError, match="LOCAL_MODEL"):
            await captioner.caption(IMAGES[0])
        shutil.copytree(tiny_blip, target)  # the operator fixes the configuration
        return await captioner.caption(IMAGES[0])

    assert run(captioner, scenario)


def test_device_and_dtype(tiny_blip: Path) -> None:
    import torch

    auto = local.choose_placement("auto", "auto", "m")
    loaded = local.load_model(str(tiny_blip), auto)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.device.type == expected
    assert loaded.dtype == auto.dtype
    assert {p.dtype for p in loaded.model.parameters()} == {auto.dtype}  # loaded in it
    bf16 = local.choose_placement("cpu", "bfloat16", "m")
    assert (bf16.dtype, bf16.reason) == (torch.bfloat16, "LOCAL_DTYPE=bfloat16")
    loaded = local.load_model(str(tiny_blip), bf16)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert len(local.generate_captions(loaded, [IMAGES[0].pil, IMAGES[1].pil], 3, 1)) == 2
    if not torch.cuda.is_available():
        with pytest.raises(ModelNotAvailable, match="LOCAL_DEVICE=cuda"):
            local.choose_placement("cuda", "auto", "m")


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "expected"),
    [(False, False, "float32"), (False, True, "bfloat16"), (True, True, "bfloat16")],
)
def test_auto_dtype_is_bfloat16_where_the_cpu_runs_it_natively(
    monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: str
) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    placement = local.choose_placement("cpu", "auto", "m")
    assert placement.dtype == getattr(torch, expected)
    capability = torch.backends.cpu.get_cpu_capability()
    assert capability in placement.reason  # what torch reports, logged and in /readyz
    if expected == "float32":
        assert "no native bfloat16" in placement.reason
    else:
        assert ("AMX" if amx else "AVX512_BF16") in placement.reason
    assert placement.describe().startswith(f"{expected} on cpu (auto: ")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_auto_dtype_on_cuda_is_the_half_type_the_gpu_supports(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    placement = local.choose_placement("auto", "auto", "m")
    assert (placement.device.type, placement.dtype) == ("cuda", getattr(torch, expected))
    assert local.choose_placement("cuda", "float32", "m").dtype == torch.float32


# bfloat16 keeps 8 bits of mantissa: on the tiny model (logits of standard deviation ~1) its
# logits stay within this of float32's (measured: at most 0.15).
LOGIT_TOLERANCE = 0.25


def test_bfloat16_agrees_with_float32(tiny_blip: Path) -> None:
    """Logits within LOGIT_TOLERANCE on the same tokens, and the same greedy tokens wherever
    the answer is not a coin toss (float32's best token ahead of the next by more than twice
    the tolerance): up to each caption's first close call, bfloat16 must pick the same."""
    import torch

    fp32 = local.load_model(str(tiny_blip), local.choose_placement("cpu", "float32", "m"))
    bf16 = local.load_model(str(tiny_blip), local.choose_placement("cpu", "bfloat16", "m"))
    # 32 images: the count of decisive steps depends on the processor's resize (torchvision's
    # or PIL's) and the CPU; measured 30 here (PIL, AVX512), 8 images gave 7-10
    images = [noise_image(seed).pil for seed in range(32)]
    pixels = fp32.processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        tokens = fp32.model.generate(pixel_values=pixels, max_new_tokens=8)
        tokens_bf16 = bf16.model.generate(pixel_values=pixels.bfloat16(), max_new_tokens=8)
        logits = fp32.model(pixel_values=pixels, input_ids=tokens).logits
        logits_bf16 = bf16.model(pixel_values=pixels.bfloat16(), input_ids=tokens).logits
    assert logits.std() > 0.5  # a model that says something
    assert (logits_bf16.float() - logits).abs().max() <= LOGIT_TOLERANCE

    best_two = logits[:, :-1].topk(2, dim=-1).values  # position t predicts token t + 1
    clear = best_two[..., 0] - best_two[..., 1] > 2 * LOGIT_TOLERANCE
    compared = 0
    for row, row_bf16, row_clear in zip(tokens, tokens_bf16, clear, strict=True):
        decisive = int(row_clear.int().cumprod(0).sum())  # steps before the first close call
        assert row_bf16[: decisive + 1].tolist() == row[: decisive + 1].tolist()
        compared += decisive
    assert compared >= 12, "the model must be decisive often enough for the test to mean much"


def test_the_model_loads_at_start_and_readyz_says_loading_until_it_is_ready(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    release, loads = threading.Event(), []
    real = local.load_model

    def gated(name: str, placement: local.Placement) -> Any:
        loads.append(name)
        assert release.wait(60)
        return real(name, placement)

    monkeypatch.setattr(local, "load_model", gated)
    no_pipeline = {"supabase_url": None, "supabase_secret_key": None, "webhook_secret": []}
    settings = make_settings(tiny_blip, ui_enabled=False, **no_pipeline)
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: loads, message="the model did not start loading at start")
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["checks"]["captioner"] == "loading"
        release.set()
        ready = wait_until(
            lambda: (r := client.get("/readyz")).status_code == 200 and r.json(),
            timeout=60,
            message="/readyz never became ready",
        )
    assert loads == [str(tiny_blip)]  # once, at start, before any request needed it
    assert ready["checks"]["captioner"] == "ok"
    assert ready["placement"] == loading.json()["placement"]
    assert ready["placement"].startswith(("bfloat16 on cpu (auto: ", "float32 on cpu (auto: "))


def test_every_torch_call_runs_on_the_one_model_thread(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One OS thread drives torch: a second one would get its own OpenMP team, and libgomp
    then throttles its spin-waits for every team (README, "Local model speed")."""
    threads: set[int] = set()
    for name in ("choose_placement", "load_model", "generate_captions"):
        real = getattr(local, name)

        def spy(*args: Any, _real: Any = real) -> Any:
            threads.add(threading.get_ident())
            return _real(*args)

        monkeypatch.setattr(local, name, spy)
    captioner = LocalCaptioner(make_settings(tiny_blip))
    run(captioner, lambda: asyncio.gather(*(captioner.caption(i) for i in IMAGES[:3])))
    assert len(threads) == 1 and threading.get_ident() not in threads
