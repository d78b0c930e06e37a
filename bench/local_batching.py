"""5. Local captioning against the seed's way, on the same CPU, in one run.

The model is BlipForConditionalGeneration built from the real `Salesforce/blip-image-
captioning-base` config (vision: hidden 768, 12 layers, 12 heads, MLP 3072, 384 px, patch 16;
text: vocabulary 30,524, hidden 768, 12 layers, 12 heads, intermediate 3,072, 512 positions;
projection 512; 224 M parameters) with random weights: weights do not change the speed.
Every caption is exactly TOKENS tokens (the end-of-text token's output bias is set very low,
so greedy decoding never stops early). Saved once under /tmp, so reruns only load it.

Variants, interleaved in rounds (medians reported; the machine may be shared):

- seed: what the seed's `pipeline("image-to-text")` does, one image per call: decode, the
  processor, one `generate` in float32 (a process of its own; transformers 5 has no such
  pipeline any more, so the calls are made directly);
- service, 1 client: `captioner serve` (LOCAL_DTYPE=auto), one request at a time over HTTP;
- service, 8 clients: eight clients each sending their next image as soon as the last is
  answered (bursts of 8).

`python -m bench.local_batching --device cuda --clients 64 --env LOCAL_BATCH_SIZE=64` runs the
same on a GPU (the service in its half type; the seed in float32, as its pipeline does), and
`--bare 64` adds the model's own ceiling: `generate` on ready-made batches of 64 in the
service's dtype, no HTTP, no decoding. `--env LOCAL_COMPILE=true` measures compilation
(start-up in the table's text, throughput in its rows).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import Environment, Result, photo_like, read_status
from tests.service_process import ServiceProcess

MODEL_DIR = Path("/tmp/captioner-bench-blip-base-real")
TOKENS = 20
TARGET_ONE, TARGET_EIGHT = 1.0, 4.0
CLIENTS = 8
SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
SPECIALS |= {30522: "[DEC]", 30523: "[ENC]"}
BLIP_BASE = {  # Salesforce/blip-image-captioning-base's config.json
    "text_config": {
        "vocab_size": 30524,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "max_position_embeddings": 512,
        "bos_token_id": 30522,
        "sep_token_id": 102,
        "pad_token_id": 0,
    },
    "vision_config": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "image_size": 384,
        "patch_size": 16,
    },
    "projection_dim": 512,
}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_fp16")


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
    config = BlipConfig(**BLIP_BASE)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    with torch.no_grad():  # never emit [SEP] (end of text): fixed-length captions
        model.text_decoder.cls.predictions.bias[config.text_config.sep_token_id] = -1e4
    model.save_pretrained(directory)
    processor = BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


def images(count: int) -> list[bytes]:
    return [photo_like(640, 480, seed=i) for i in range(count)]


def cpu_flags() -> str:
    """The CPU's bfloat16-relevant flags (from /proc/cpuinfo) and torch's capability."""
    import torch

    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    present = [flag for flag in CPU_FLAGS if flag in flags]
    return f"{' '.join(present) or 'none'} (torch: {torch.backends.cpu.get_cpu_capability()})"


# --- the seed's way, in a process of its own -------------------------------------------


def seed_worker(directory: str, device: str) -> None:
    """stdin `run N` → stdout the seconds N images took, one `generate` each, float32."""
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(directory)
    model = BlipForConditionalGeneration.from_pretrained(directory).to(device).eval()
    pictures = images(CLIENTS)
    print("ready", flush=True)
    for line in sys.stdin:
        count = int(line.split()[1])
        started = time.perf_counter()
        for i in range(count):
            image = Image.open(io.BytesIO(pictures[i % len(pictures)])).convert("RGB")
            inputs = processor(images=image, return_tensors="pt").to(device)
            with torch.inference_mode():
                model.generate(**inputs, max_new_tokens=TOKENS)
        print(f"{time.perf_counter() - started:.4f}", flush=True)


class Seed:
    def __init__(self, directory: Path, device: str) -> None:
        command = [sys.executable, "-m", "bench.local_batching", "--seed-worker", str(directory)]
        self.proc = subprocess.Popen(
            [*command, "--device", device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def images_per_second(self, count: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"run {count}\n")
        self.proc.stdin.flush()
        return count / float(self.proc.stdout.readline())

    def close(self) -> dict[str, int]:
        status = read_status(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        return status


def bare_rate(directory: Path, device: str, batch: int, rounds: int = 3) -> tuple[float, str]:
    """(images/s, dtype): `generate` on a ready batch, the model loaded as the service loads
    it (LOCAL_DTYPE=auto), best of rounds."""
    import torch
    from PIL import Image

    from app.captioning.local import choose_placement, load_model, to_device

    placement = choose_placement(device, "auto", str(directory))
    loaded = load_model(str(directory), placement)
    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in images(batch)]
    inputs = loaded.processor(images=pictures, return_tensors="pt")
    tensors = {key: to_device(value, loaded) for key, value in inputs.items()}
    best = 0.0
    with torch.inference_mode():
        for _ in range(rounds + 1):  # the first warms up
            started = time.perf_counter()
            loaded.model.generate(**tensors, max_new_tokens=TOKENS)
            if placement.device.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, batch / (time.perf_counter() - started))
    return best, str(placement.dtype).removeprefix("torch.")


# --- the service over HTTP --------------------------------------------------------------


def start_service(scratch: Path, directory: Path, device: str, **extra: str) -> tuple[Any, float]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "OMP_WAIT_POLICY")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env |= {
        "HF_HUB_OFFLINE": "1",
        "CAPTION_BACKEND": "local",
        "LOCAL_MODEL": str(directory),
        "LOCAL_DEVICE": device,
        "MAX_NEW_TOKENS": str(TOKENS),
        "UI_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "CAPTION_TIMEOUT": "3600",  # a batch on a busy shared CPU can take minutes
        **extra,
    }
    started = time.perf_counter()
    service = ServiceProcess(env, scratch / f"local-{len(extra)}.log").start(timeout=900)
    return service, time.perf_counter() - started


def batches(url: str) -> tuple[float, float]:
    """(batches run, images in them) from the service's /metrics."""
    text = httpx.get(url + "/metrics", timeout=30).text
    values = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for key in values:
            if line.startswith(f"captioner_local_batch_size_{key} "):
                values[key] = float(line.split()[1])
    return values["count"], values["sum"]


def over_http(url: str, pictures: list[bytes], clients: int, each: int) -> tuple[float, float]:
    """(images/s, mean batch size): `clients` clients, `each` images apiece, back to back."""

    def client(index: int) -> None:
        with httpx.Client(timeout=600) as http:
            for n in range(each):
                data = pictures[(index + n * clients) % len(pictures)]
                files = {"image": (f"{index}-{n}.jpg", data, "image/jpeg")}
                http.post(url + "/v1/captions", files=files).raise_for_status()

    count, total = batches(url)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    seconds = time.perf_counter() - started
    count2, total2 = batches(url)
    return clients * each / seconds, (total2 - total) / max(count2 - count, 1)


# --- the benchmark ----------------------------------------------------------------------


def measure(
    scratch: Path,
    rounds: int,
    device: str,
    seed_images: int,
    each: int = 2,
    clients: int = CLIENTS,
    service_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    directory = build_model()
    pictures = images(max(16, clients))
    loads = [os.getloadavg()[0]]
    seed = Seed(directory, device)
    service, start_seconds = start_service(scratch, directory, device, **(service_env or {}))
    placement = httpx.get(service.url + "/readyz", timeout=30).json().get("placement", "?")
    runs: dict[str, list[float]] = {"seed": [], "one": [], "many": []}
    sizes: list[float] = []
    try:
        over_http(service.url, pictures, 1, 1)  # a first request, not timed
        for _ in range(rounds):
            runs["seed"].append(seed.images_per_second(seed_images))
            runs["one"].append(over_http(service.url, pictures, 1, seed_images)[0])
            rate, size = over_http(service.url, pictures, clients, each)
            runs["many"].append(rate)
            sizes.append(size)
            loads.append(os.getloadavg()[0])
            print(
                f"  round: { {k: round(v[-1], 3) for k, v in runs.items()} }, "
                f"batch {size:.1f}, load {loads[-1]:.1f}",
                file=sys.stderr,
                flush=True,
            )
        service_rss = read_status(service.proc.pid)
    finally:
        seed_rss = seed.close()
        service.stop()
    medians = {key: statistics.median(values) for key, values in runs.items()}
    return {
        "medians": medians,
        "runs": runs,
        "batch": statistics.median(sizes),
        "placement": placement,
        "seed_rss": seed_rss,
        "service_rss": service_rss,
        "start_seconds": start_seconds,
        "loads": loads,
        "rounds": rounds,
        "device": device,
        "clients": clients,
        "flags": cpu_flags(),
    }


def results(m: dict[str, Any]) -> list[Result]:
    med = m["medians"]
    one, many = med["one"] / med["seed"], med["many"] / med["seed"]
    common = (
        f"BLIP-base dimensions, random weights, {TOKENS} tokens each, {m['device']}; "
        f"median of {m['rounds']} interleaved rounds; load average "
        f"{min(m['loads']):.1f}-{max(m['loads']):.1f}"
    )
    return [
        Result(
            f"5. local: service, {m['clients']} concurrent clients vs seed",
            many,
            "x",
            f">= {TARGET_EIGHT}x",
            many >= TARGET_EIGHT,
            f"{med['many']:.2f} images/s vs the seed's {med['seed']:.2f} (one float32 "
            f"generate per image); batches of {m['batch']:.1f} on average; "
            f"{m['placement']}; {common}",
            {"medians": med},
        ),
        Result(
            "5. local: service, 1 client vs seed",
            one,
            "x",
            f">= {TARGET_ONE}x",
            one >= TARGET_ONE,
            f"{med['one']:.2f} images/s vs the seed's {med['seed']:.2f}; {common}",
        ),
    ]


def megabytes(status: dict[str, int]) -> str:
    return f"{status.get('VmRSS', 0) / 1024:.0f} MB (peak {status.get('VmHWM', 0) / 1024:.0f} MB)"


def table_section(m: dict[str, Any]) -> str:
    med, seed = m["medians"], m["medians"]["seed"]
    mb = megabytes
    dtype = m["placement"].split(" on ")[0]
    rows = [
        (
            "seed: one `generate` per image (its pipeline's way)",
            med["seed"],
            "float32",
            mb(m["seed_rss"]),
        ),
        ("service over HTTP, 1 client", med["one"], dtype, mb(m["service_rss"])),
        (
            f"service over HTTP, {m['clients']} concurrent clients",
            med["many"],
            dtype,
            mb(m["service_rss"]),
        ),
    ]
    lines = [
        "## Local captioning (bench/local_batching.py)",
        "",
        f"`python -m bench.local_batching` on {m['device']}: BLIP-base's real dimensions, random "
        f"weights, {TOKENS} tokens per caption. Median of {m['rounds']} rounds, the variants "
        f"interleaved in each; load average {min(m['loads']):.1f}-{max(m['loads']):.1f} "
        f"during the run (the 2 cores were shared with other work when above 2). "
        f"CPU flags: {m['flags']}. The service: {m['placement']}; ready "
        f"{m['start_seconds']:.0f} s after start (load and warm-up). RSS: at the end of the "
        "run (peak since start).",
        "",
        "| variant | images/s | × seed | dtype | RSS |",
        "|---|---|---|---|---|",
    ]
    for name, rate, dtype_shown, rss in rows:
        lines.append(f"| {name} | {rate:.2f} | {rate / seed:.2f} | {dtype_shown} | {rss} |")
    each = "; ".join(f"{k} " + " / ".join(f"{v:.2f}" for v in vs) for k, vs in m["runs"].items())
    batch = f"mean batch at {m['clients']} clients {m['batch']:.1f}"
    lines += ["", f"Every round (images/s): {each}; {batch}."]
    return "\n".join(lines)


def run(env: Environment, quick: bool) -> list[Result]:
    measured = measure(env.scratch, 1 if quick else 5, "cpu", 2 if quick else 4)
    env.cache["local_batching"] = measured
    return results(measured)


def section(env: Environment) -> str:
    measured = env.cache.get("local_batching")
    return table_section(measured) if measured else ""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.local_batching", description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (not measured here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed-images", type=int, default=4, help="per round, and 1 client's")
    parser.add_argument("--each", type=int, default=2, help="images per client, many clients")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="the many clients' count")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="for the service"
    )
    parser.add_argument("--bare", type=int, metavar="BATCH", help="also the model's ceiling")
    parser.add_argument("--seed-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_worker:
        seed_worker(args.seed_worker, args.device)
        return
    scratch = Path(os.environ.get("TMPDIR", "/tmp"))
    measured = measure(
        scratch,
        args.rounds,
        args.device,
        args.seed_images,
        args.each,
        args.clients,
        dict(setting.split("=", 1) for setting in args.env),
    )
    for result in results(measured):
        print(f"{result.name}: {result.shown} ({result.verdict}) {result.notes}")
    print("\n" + table_section(measured))
    if args.bare:
        rate, dtype = bare_rate(build_model(), args.device, args.bare)
        print(f"\nbare generate, batch {args.bare}, {dtype}, {args.device}: {rate:.1f} images/s")


if __name__ == "__main__":
    main()
