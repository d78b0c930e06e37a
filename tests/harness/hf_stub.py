"""A Hugging Face stand-in: the Hub's model API, the Inference Providers router, and
Inference Endpoints, on one local server, speaking the wire formats huggingface_hub uses.

Point the service at it as users configure it: ``HF_ENDPOINT=<url>`` (huggingface_hub's own
variable for the Hub) and ``HF_ROUTER_URL=<url>`` (ours: the router's host, which
huggingface_hub hard-codes as ``constants.INFERENCE_PROXY_TEMPLATE`` and in its provider
helpers, so the service builds router URLs itself from this setting; see
app/captioning/routes.py). ``CAPTION_MODEL=<url>/models/<anything>`` is an Inference Endpoint.

What it answers, and where each behaviour comes from:

- ``GET /api/models/<id>?expand=inferenceProviderMapping`` → ``{"id", "inferenceProviderMapping":
  {provider: {"status", "providerId", "task"}}}`` (a dict per provider on model_info:
  ``huggingface_hub.hf_api.ModelInfo``; huggingface.js ``getInferenceProviderMapping.ts``). A
  model with no provider answers ``{}`` (huggingface_hub then raises ``StopIteration``); an
  unknown model 404 with ``X-Error-Code: RepoNotFound`` and a wrong token 401 with
  ``X-Error-Message: Invalid credentials in Authorization header`` (both read by
  ``huggingface_hub.utils._http.hf_raise_for_status``); a gated model 403 ``GatedRepo``.
- ``GET /api/whoami-v2`` → the token's owner (``HfApi.whoami``), 401 for a wrong token.
- A model's files (``HubModel.files``), as ``snapshot_download`` fetches them (huggingface_hub
  ``_snapshot_download.py``, ``file_download.py``): ``GET /api/models/<id>/revision/<rev>`` →
  ``{"id", "sha", "siblings": [{"rfilename"}]}`` (``HfApi.model_info`` / ``repo_info``);
  ``GET /api/models/<id>/tree/<rev>?recursive=...`` → ``[{"type": "file", "oid", "size",
  "path", "lfs": {"oid", "size", "pointerSize"}}]`` (``HfApi.list_repo_tree``, ``RepoFile``;
  one page, no ``Link`` header); ``HEAD``/``GET /<id>/resolve/<rev>/<file>`` → a git file
  200 with ``X-Repo-Commit``, ``ETag`` (the git blob id) and ``Content-Length``; an LFS file
  (the Hub's default ``.gitattributes``: weights) 302 to the CDN, another host (``localhost``
  here: huggingface_hub follows a HEAD's redirect only on the Hub's own host,
  ``utils/_http.py`` ``_httpx2_follow_hub_redirects_with_backoff``) with ``X-Linked-Etag`` (its
  sha256) and ``X-Linked-Size`` (read by ``get_hf_file_metadata``); no Xet headers, so the
  client takes the plain HTTP download. A missing file 404 ``X-Error-Code: EntryNotFound``.
  ``downloads`` records each file's GET.
- ``POST /hf-inference/models/<id>``: image-to-text on the hf-inference provider, the URL
  huggingface_hub's ``HFInferenceTask._prepare_url`` builds; a model hf-inference does not
  serve for image-to-text answers 404 "Not Found" (huggingface_hub issues #3052, #3717).
- ``POST /v1/chat/completions``: the router's OpenAI-compatible chat, ``model`` being ``<id>``
  (the router picks a provider) or ``<id>:<provider>`` (Inference Providers docs,
  tasks/image-text-to-text); a model no provider serves → 400 ``{"error": {"message": "The
  requested model '<id>' is not supported by any provider you have enabled.", "type":
  "invalid_request_error", "param": "model", "code": "model_not_supported"}}`` (the message as
  users report it: cline#5098, page-assist#727; the shape OpenAI's).
- ``POST /<provider>/v1/chat/completions``: one provider's route (huggingface_hub's
  ``BaseConversationalTask``), 400 ``{"error": "Model not supported by provider <p>"}``
  otherwise (huggingface.js#2225).
- ``POST /models/<anything>[/v1/chat/completions]``: an Inference Endpoint or TGI: any
  model (image-to-text: raw bytes or JSON ``{"inputs": <base64>}`` → ``[{"generated_text"}]``).
- ``POST /vllm/v1/chat/completions``: vLLM's OpenAI server, which serves only the names in
  ``served_model_names`` and answers any other ``model`` 404 ``{"object": "error", "message":
  "The model `<m>` does not exist.", "type": "NotFoundError", "param": null, "code": 404}``
  (vLLM's ``OpenAIServing._check_model`` and ``ErrorResponse``).
- Failures, on the inference routes: a wrong token 401 ``{"error": "Invalid credentials in
  Authorization header"}``; ``credits = False`` → 402 ``{"error": "You have exceeded your
  monthly included credits for Inference Providers. ..."}`` (the message users report:
  huggingface/agents-course#386); scripted ``Loading`` (503 + ``estimated_time``),
  ``RateLimited`` (429 + ``Retry-After``), ``ServerError``, ``Hang`` (then an answer or another
  outcome), ``BadBody`` (a 200 whose body is not what the task returns), ``Content`` (a chat
  completion whose message is the given text: prose, broken JSON, a field too long) and
  ``Answer`` (a 200 with that text as the caption, JSON-escaped so that a lone surrogate
  travels as ``\\udXXX``: JSON's grammar allows it, RFC 8259 section 8.2, and Python's
  ``json``, which huggingface_hub parses with, decodes it as it is);
  ``refuse_connections()``. The same outcomes as
  ``outage`` (every request while it is set: a provider on a bad day) or ``by_size`` (the
  requests whose image has that size: one image the model chokes on).
- Structured output (``response_format``), route by route as the real ones read it: the router
  and vLLM take OpenAI's ``json_schema``; a provider in ``no_json_schema`` refuses it (422);
  Inference Endpoints and hf-inference are TGI and refuse anything but TGI's grammar shape
  (422). Sources and the answers: tests/harness/structured_output.py.

Captions are deterministic: ``"a {w}x{h} picture, mostly {colour}"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageStat, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import structured_output
from .servers import ThreadedServer, serve_in_thread

COLOURS = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "orange": (250, 140, 20),
    "purple": (130, 50, 160),
    "brown": (120, 80, 40),
    "pink": (250, 160, 190),
    "cyan": (40, 200, 220),
}


@dataclass
class Loading:
    """503 "model is loading"."""

    estimated_time: float = 20.0


@dataclass
class RateLimited:
    """429 with a Retry-After header."""

    retry_after: int = 1


@dataclass
class ServerError:
    status: int = 500
    message: str = "Internal Server Error"


@dataclass
class Hang:
    """Sleep ``seconds`` then answer normally, or with ``then`` (another outcome: a slow
    answer that misses the schema, a slow refusal); to trigger client timeouts."""

    seconds: float = 30.0
    then: Any = None


@dataclass
class BadBody:
    """200 with a body that is not what the task returns."""

    body: bytes = b'{"generated_text": "not in a list"}'
    content_type: str = "application/json"


@dataclass
class Content:
    """200 chat completion whose message content is ``text`` (what a model may answer)."""

    text: str
    finish_reason: str = "stop"


@dataclass
class Answer:
    """200 with ``text`` as the caption (whatever it holds: empty, NUL, huge)."""

    text: str = ""


@dataclass
class HubModel:
    """A model on the stand-in Hub: ``providers`` maps provider → task (status ``live``)."""

    providers: dict[str, str]
    pipeline_tag: str = "image-to-text"
    status: str = "live"
    gated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)  # the repository, by path

    @property
    def sha(self) -> str:
        """The commit: a hash of the files, as stable as a git commit of them."""
        digest = hashlib.sha1()
        for path, data in sorted(self.files.items()):
            digest.update(path.encode() + b"\0" + git_blob_id(data).encode())
        return digest.hexdigest()

    def serves(self, provider: str, task: str) -> bool:
        return self.status == "live" and self.providers.get(provider) == task


NO_CREDITS = (
    "You have exceeded your monthly included credits for Inference Providers. "
    "Subscribe to PRO to get 20x more monthly included credits."
)
BAD_TOKEN = "Invalid credentials in Authorization header"
# Stored with Git LFS by the Hub's default .gitattributes (weights and archives)
LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".onnx", ".pt", ".pth", ".ot")


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file: sha1 of "blob <size>\\0" + the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def caption_for(data: bytes) -> str:
    """The stand-in's deterministic caption for image bytes (ValueError if undecodable)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            small = img.convert("RGB")
            small.thumbnail((64, 64))
            mean = ImageStat.Stat(small).mean
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot identify image file: {exc}") from exc
    colour = min(
        COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], mean, strict=True))
    )
    return f"a {w}x{h} picture, mostly {colour}"


class HuggingFaceStandIn:
    """ASGI app ``.app`` speaking HF's image-to-text and OpenAI chat wire formats."""

    def __init__(self, require_token: str | None = None) -> None:
        self.require_token = require_token
        self.latency = 0.0
        self.decode = True  # False: caption by size, without decoding (for benchmarks)
        self.credits = True  # False: 402 on every inference call
        self.hub: dict[str, HubModel] = {}
        self.served_model_names = {"Qwen/Qwen2.5-VL-7B-Instruct"}  # the /vllm/ server's
        self.no_json_schema: set[str] = set()  # router providers refusing json_schema
        self.text_in_image = ""  # what the stand-in model reads in every image
        self.calls: list[dict[str, Any]] = []  # inference calls
        self.hub_calls: list[dict[str, Any]] = []  # Hub API calls
        self.outage: Any = None  # the outcome of every inference request while set
        self.by_size: dict[tuple[int, int], Any] = {}  # the outcome for images of that size
        self.downloads: list[str] = []  # "<model>/<file>" of each file's GET
        self._script: deque[Any] = deque()
        self._cdn_files: dict[str, tuple[str, bytes]] = {}  # sha256 → (<model>/<file>, bytes)
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self._port = 0
        self.app = Starlette(
            routes=[
                Route("/api/whoami-v2", self._whoami, methods=["GET"]),
                Route("/api/models/{model:path}", self._model_info, methods=["GET"]),
                Route("/cdn/{sha256}", self._cdn, methods=["GET", "HEAD"]),
                Route("/{path:path}", self._handle, methods=["POST"]),
                Route("/{path:path}", self._resolve, methods=["GET", "HEAD"]),
            ]
        )

    def add_model(
        self, model: str, providers: dict[str, str] | None = None, **fields: Any
    ) -> HubModel:
        """Put a model on the Hub, served by ``providers`` ({provider: task})."""
        self.hub[model] = HubModel(dict(providers or {}), **fields)
        return self.hub[model]

    # serving ----------------------------------------------------------------------
    def start(self) -> HuggingFaceStandIn:
        self._server = serve_in_thread(self.app, port=self._port)
        self._port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def refuse_connections(self, refuse: bool = True) -> None:
        """Stop listening (connections refused) or listen again on the same port."""
        if refuse:
            self.stop()
        elif self._server is None:
            self.start()

    def __enter__(self) -> HuggingFaceStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # knobs ------------------------------------------------------------------------
    def script(self, *responses: Any) -> None:
        """Queue outcomes (Loading, RateLimited, ServerError, Hang), one per request."""
        with self._lock:
            self._script.extend(responses)

    def _next_scripted(self) -> Any:
        with self._lock:
            return self._script.popleft() if self._script else None

    # Hub ------------------------------------------------------------------------------
    def _token_refused(self, request: Request) -> bool:
        """A token was sent and it is not the one the stand-in accepts."""
        sent = request.headers.get("authorization")
        return bool(self.require_token and sent and sent != f"Bearer {self.require_token}")

    async def _model_info(self, request: Request) -> Response:
        model_id, kind, _ = _split_api_path(request.path_params["model"])
        with self._lock:
            self.hub_calls.append(
                {
                    "path": request.url.path,
                    "query": str(request.url.query),
                    "authorization": request.headers.get("authorization"),
                }
            )
        if self._token_refused(request):
            return JSONResponse({"error": BAD_TOKEN}, 401, headers={"X-Error-Message": BAD_TOKEN})
        model = self.hub.get(model_id)
        if model is None:
            return JSONResponse(
                {"error": "Repository not found"},
                404,
                headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"},
            )
        if model.gated and not request.headers.get("authorization"):
            return JSONResponse(
                {"error": "Access to this model is restricted"},
                403,
                headers={"X-Error-Code": "GatedRepo"},
            )
        if kind == "tree":
            return JSONResponse(
                [_tree_entry(path, data) for path, data in sorted(model.files.items())]
            )
        body: dict[str, Any] = {
            "_id": f"hub-{abs(hash(model_id))}",
            "id": model_id,
            "sha": model.sha,
            "siblings": [{"rfilename": path} for path in sorted(model.files)],
        }
        if "inferenceProviderMapping" in request.url.query:
            body["inferenceProviderMapping"] = {
                provider: {"status": model.status, "providerId": model_id, "task": task}
                for provider, task in model.providers.items()
            }
        else:
            body["pipeline_tag"] = model.pipeline_tag
        return JSONResponse(body)

    async def _resolve(self, request: Request) -> Response:
        """``/<id>/resolve/<rev>/<file>``: a file of a model at a revision (any: one commit)."""
        model_id, _, rest = request.path_params["path"].partition("/resolve/")
        _, _, path = rest.partition("/")
        model = self.hub.get(model_id)
        if model is None or path not in model.files:
            code = "RepoNotFound" if model is None else "EntryNotFound"
            return PlainTextResponse("Entry not found", 404, headers={"X-Error-Code": code})
        data = model.files[path]
        headers = {"X-Repo-Commit": model.sha, "ETag": f'"{git_blob_id(data)}"'}
        if is_lfs(path):
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(data)),
                    "Location": f"http://localhost:{self._port}/cdn/{sha256}",
                }
            )
            self._cdn_files[sha256] = (f"{model_id}/{path}", data)
            return Response(status_code=302, headers=headers)
        if request.method == "GET":
            with self._lock:
                self.downloads.append(f"{model_id}/{path}")
        body = data if request.method == "GET" else b""
        headers["Content-Length"] = str(len(data))
        return Response(body, headers=headers, media_type="application/octet-stream")

    async def _cdn(self, request: Request) -> Response:
        name, data = self._cdn_files.get(request.path_params["sha256"], ("", b""))
        if not name:
            return PlainTextResponse("Not Found", 404)
        if request.method == "GET":
            with self._lock:
                self.downloads.append(name)
        return Response(
            data if request.method == "GET" else b"",
            headers={"Content-Length": str(len(data))},
            media_type="application/octet-stream",
        )

    async def _whoami(self, request: Request) -> Response:
        sent = request.headers.get("authorization")
        if not sent or self._token_refused(request):
            return JSONResponse({"error": BAD_TOKEN}, 401, headers={"X-Error-Message": BAD_TOKEN})
        return JSONResponse(
            {
                "type": "user",
                "id": "standin-user-id",
                "name": "standin-user",
                "fullname": "Stand-in User",
                "orgs": [],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "captioner", "role": "fineGrained"},
                },
            }
        )

    # inference -------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        started = time.time()
        body = await request.body()
        path = "/" + request.path_params["path"]
        response = await self._respond(request, path, body)
        with self._lock:
            self.calls.append(
                {
                    "started": started,
                    "time": time.time(),
                    "path": path,
                    "content_type": request.headers.get("content-type"),
                    "n_bytes": len(body),
                    "status": response.status_code,
                    "authorization": request.headers.get("authorization"),
                    "body": body,
                }
            )
        return response

    async def _respond(self, request: Request, path: str, body: bytes) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        if (
            self.require_token
            and request.headers.get("authorization") != f"Bearer {self.require_token}"
        ):
            return JSONResponse({"error": BAD_TOKEN}, 401)
        refused, model = self._route(path, body)
        if refused is None and path.endswith("/chat/completions"):
            refused = self._response_format_refusal(path, body)
        if refused is not None:
            return refused
        if not self.credits:
            return JSONResponse({"error": NO_CREDITS}, 402)
        outcome = self.outage or self._next_scripted() or self._by_size(path, body)
        if isinstance(outcome, Hang):
            await asyncio.sleep(outcome.seconds)
            outcome = outcome.then
        if outcome is not None:
            return _answer(outcome, model, path, body)
        try:
            if path.endswith("/chat/completions"):
                return self._chat(body, model)
            image = _image_bytes(request, body)
            caption = caption_for(image) if self.decode else f"an image of {len(image)} bytes"
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse([{"generated_text": caption}])

    def _by_size(self, path: str, body: bytes) -> Any:
        if not self.by_size:
            return None
        try:
            chat = path.endswith("/chat/completions")
            image = _chat_image(json.loads(body)) if chat else body
            with Image.open(io.BytesIO(image)) as img:
                return self.by_size.get(img.size)
        except (ValueError, OSError, UnidentifiedImageError):
            return None

    def _route(self, path: str, body: bytes) -> tuple[Response | None, str]:
        """(a refusal, or None; the model) for the route the request took."""
        chat = path.endswith("/chat/completions")
        if path == "/vllm/v1/chat/completions":
            model = _payload_model(body)
            if model in self.served_model_names:
                return None, model
            return JSONResponse(
                {
                    "object": "error",
                    "message": f"The model `{model}` does not exist.",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                },
                404,
            ), model
        if path.startswith("/models/"):  # an Inference Endpoint / TGI: serves anything
            return None, path.removeprefix("/models/").removesuffix("/v1/chat/completions")
        if path.startswith("/hf-inference/models/"):
            model = path.removeprefix("/hf-inference/models/").removesuffix("/v1/chat/completions")
            task = "conversational" if chat else "image-to-text"
            served = model in self.hub and self.hub[model].serves("hf-inference", task)
            return (None if served else PlainTextResponse("Not Found", 404)), model
        requested = _payload_model(body) if chat else ""
        if path == "/v1/chat/completions":  # the router picks the provider
            model, _, provider = requested.partition(":")
            hub = self.hub.get(model)
            candidates = [provider] if provider else list(hub.providers) if hub else []
            ok = hub is not None and any(hub.serves(p, "conversational") for p in candidates)
            return (None if ok else _not_supported(model)), model
        provider = path.removesuffix("/v1/chat/completions").strip("/")
        hub = self.hub.get(requested)
        if chat and hub is not None and hub.serves(provider, "conversational"):
            return None, requested
        return JSONResponse({"error": f"Model not supported by provider {provider}"}, 400), ""

    def _response_format_refusal(self, path: str, body: bytes) -> Response | None:
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        response_format = payload.get("response_format")
        if path.startswith("/vllm/"):
            return structured_output.vllm_refusal(response_format)
        if path.startswith(("/models/", "/hf-inference/")):
            return structured_output.tgi_refusal(response_format, body)
        if self._router_provider(path, payload) in self.no_json_schema:
            return structured_output.provider_refusal(response_format)
        return None

    def _router_provider(self, path: str, payload: dict[str, Any]) -> str:
        """The provider the router sends a chat request to (the first that serves it)."""
        model, _, provider = str(payload.get("model", "")).partition(":")
        if path != "/v1/chat/completions":
            return path.removesuffix("/v1/chat/completions").strip("/")
        hub = self.hub.get(model)
        serving = [p for p in (hub.providers if hub else {}) if hub.serves(p, "conversational")]
        return provider or (serving[0] if serving else "")

    def _chat(self, body: bytes, model: str) -> Response:
        payload = json.loads(body)
        caption = caption_for(_chat_image(payload))
        content = structured_output.answer(caption, payload, self.text_in_image)
        return _completion(payload, model, content)


def _completion(
    payload: dict[str, Any], model: str, content: str, finish_reason: str = "stop"
) -> Response:
    """An OpenAI chat.completion object (huggingface_hub's ChatCompletionOutput reads it)."""
    return JSONResponse(
        {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model") or model,
            "system_fingerprint": "hf-standin",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": len(content.split()),
                "total_tokens": 10 + len(content.split()),
            },
        }
    )


def _answer(outcome: Any, model: str, path: str, request: bytes) -> Response:
    """The response for a scripted outcome (not Hang)."""
    if isinstance(outcome, Content):
        return _completion(json.loads(request), model, outcome.text, outcome.finish_reason)
    if isinstance(outcome, Loading):
        return JSONResponse(
            {
                "error": f"Model {model} is currently loading",
                "estimated_time": outcome.estimated_time,
            },
            503,
        )
    if isinstance(outcome, RateLimited):
        return JSONResponse(
            {"error": "Rate limit reached. Please retry later."},
            429,
            headers={"Retry-After": str(outcome.retry_after)},
        )
    if isinstance(outcome, ServerError):
        return JSONResponse({"error": outcome.message}, outcome.status)
    if isinstance(outcome, BadBody):
        return Response(outcome.body, 200, media_type=outcome.content_type)
    if path.endswith("/chat/completions"):
        body: Any = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "model": model,
            "created": int(time.time()),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": outcome.text},
                }
            ],
        }
    else:
        body = [{"generated_text": outcome.text}]
    return Response(json.dumps(body, ensure_ascii=True), 200, media_type="application/json")


def _split_api_path(path: str) -> tuple[str, str, str]:
    """``<id>[/revision|/tree/<rev>[/<path>]]`` → (id, "revision" | "tree" | "", the rest)."""
    for kind in ("revision", "tree"):
        model_id, sep, rest = path.partition(f"/{kind}/")
        if sep:
            return model_id, kind, rest
    return path, "", ""


def _tree_entry(path: str, data: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "type": "file",
        "oid": git_blob_id(data),
        "size": len(data),
        "path": path,
    }
    if is_lfs(path):
        entry["lfs"] = {
            "oid": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "pointerSize": 134,
        }
    return entry


def _payload_model(body: bytes) -> str:
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return ""
    return model if isinstance(model, str) else ""


def _not_supported(model: str) -> Response:
    return JSONResponse(
        {
            "error": {
                "message": f"The requested model '{model}' is not supported by any provider "
                "you have enabled.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_supported",
            }
        },
        400,
    )


def _image_bytes(request: Request, body: bytes) -> bytes:
    """Raw image bytes, or the base64 ``inputs`` of a JSON body."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            return base64.b64decode(json.loads(body)["inputs"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"invalid JSON inputs: {exc}") from exc
    return body


def _chat_image(payload: dict[str, Any]) -> bytes:
    """The first ``data:`` image_url content part of the chat messages."""
    for message in payload.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                if not url.startswith("data:"):
                    raise ValueError("the stand-in only accepts data: image URLs")
                try:
                    return base64.b64decode(url.split(",", 1)[1], validate=True)
                except (IndexError, binascii.Error) as exc:
                    raise ValueError(f"invalid data URL: {exc}") from exc
    raise ValueError("no image_url content part in messages")
