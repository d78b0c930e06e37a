"""Structured output (`response_format`) as each real chat route reads it, for the stand-ins
(hf_stub.py: the HF router, Inference Endpoints/TGI, hf-inference; openai_server.py: vLLM).

Where each behaviour comes from:

- OpenAI's shape, `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`, is
  what the HF router takes (Inference Providers docs, guides/structured-output: the
  huggingface_hub and openai clients both send it to router.huggingface.co) and what vLLM
  takes (vllm/entrypoints/openai/engine/protocol.py `ResponseFormat`: type one of text,
  json_object, json_schema; chat_completion/protocol.py `validate_response_format`: a
  json_schema type without `json_schema` is a 400 "When response_format type is
  'json_schema', the 'json_schema' field must be provided"). vLLM's OpenAIBaseModel allows
  and ignores unknown fields (it only logs them), so `{"type": "json_object", "value": ...}`
  is any JSON object there, not the schema.
- A router provider that does not implement json_schema refuses it before the model runs:
  422 with a pydantic `literal_error` at `body.response_format.type` "Input should be 'text'
  or 'json_object'" (DeepInfra's answer as relayed in lightning-rod-labs/sculpt#10; the
  docs' own advice is to pick a provider for structured outputs).
- TGI (Inference Endpoints, hf-inference) reads `response_format` as its `GrammarType`, an
  enum tagged by `type` with its content in `value` (`json`, alias `json_object`; `regex`;
  text-generation-inference router/src/lib.rs). OpenAI's shape has no `value`: 422 "Failed
  to deserialize the JSON body into the target type: response_format: missing field `value`"
  (huggingface_hub#2744, text-generation-inference#2899). huggingface_hub rewrites a
  json_schema into `{"type": "json_object", "value": schema}` for exactly this
  (inference/_providers/hf_inference.py, HFInferenceConversational).

The stand-in "model" answers the schema it was given (or the schema spelled out in the prompt,
or the five fields when the prompt asks for a JSON object) with deterministic values built
from `caption_for`; a prompt in another language prefixes "[<tag>] ".
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

FIELDS = ("caption", "alt_text", "description", "tags", "text_in_image")
LANGUAGE = re.compile(r'BCP 47 tag "([A-Za-z0-9-]+)"')
SCHEMA_LINE = re.compile(r"^The JSON schema: (\{.*\})$", re.MULTILINE)


def vllm_refusal(response_format: Any) -> Response | None:
    """vLLM's answer to a `response_format` it cannot take, or None."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return JSONResponse(
            {
                "error": {
                    "message": f"1 validation error: response_format.type Input should be 'text', "
                    f"'json_object' or 'json_schema', input: {kind!r}",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
            400,
        )
    if kind == "json_schema" and not isinstance(response_format.get("json_schema"), dict):
        return JSONResponse(
            {
                "error": {
                    "message": "When response_format type is 'json_schema', the "
                    "'json_schema' field must be provided.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
            400,
        )
    return None


def tgi_refusal(response_format: Any, body: bytes) -> Response | None:
    """TGI's answer to a `response_format` that is not its GrammarType, or None."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in ("json", "json_object", "regex") and "value" in response_format:
        return None
    column = body.find(b'"response_format"') + 1
    if kind not in ("json", "json_object", "regex"):
        what = f"unknown variant `{kind}`, expected `json` or `regex`"
    else:
        what = "missing field `value`"
    return PlainTextResponse(
        f"Failed to deserialize the JSON body into the target type: response_format: {what} "
        f"at line 1 column {column}",
        422,
    )


def provider_refusal(response_format: Any) -> Response | None:
    """A router provider without json_schema support (DeepInfra-style 422), or None."""
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind in (None, "text", "json_object"):
        return None
    return JSONResponse(
        {
            "detail": [
                {
                    "type": "literal_error",
                    "loc": ["body", "response_format", "type"],
                    "msg": "Input should be 'text' or 'json_object'",
                    "input": kind,
                    "ctx": {"expected": "'text' or 'json_object'"},
                }
            ]
        },
        422,
    )


def wanted_schema(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the request asks the model to fill, or None for a plain answer."""
    response_format = payload.get("response_format")
    if isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            return (response_format.get("json_schema") or {}).get("schema") or {}
        if isinstance(response_format.get("value"), dict):
            return response_format["value"]
    prompt = prompt_text(payload)
    if match := SCHEMA_LINE.search(prompt):
        return json.loads(match.group(1))
    if "JSON object" in prompt:
        return {"properties": {name: {} for name in FIELDS}}
    return None


def prompt_text(payload: dict[str, Any]) -> str:
    texts = []
    for message in payload.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
    return "\n".join(texts)


def language(payload: dict[str, Any]) -> str:
    match = LANGUAGE.search(prompt_text(payload))
    return match.group(1) if match else "en"


def answer(caption: str, payload: dict[str, Any], text_in_image: str = "") -> str:
    """The stand-in model's content: the caption, or a JSON object for the schema asked."""
    schema = wanted_schema(payload)
    tag = language(payload)
    prefix = "" if tag.lower().startswith("en") else f"[{tag}] "
    if schema is None:
        return prefix + caption
    size, _, colour = caption.removeprefix("a ").partition(" picture, mostly ")
    values: dict[str, Any] = {
        "caption": f"{prefix}{caption}",
        "alt_text": f"{prefix}{caption[0].upper()}{caption[1:]}.",
        "description": f"{prefix}A picture of {size} pixels. Most of it is {colour}; "
        "nothing else can be made out.",
        "tags": [colour, "picture"],
        "text_in_image": text_in_image,
    }
    properties = schema.get("properties") or {}
    return json.dumps({name: values[name] for name in properties if name in values})
