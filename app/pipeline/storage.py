"""Fetch an object's bytes from Supabase Storage: a short-lived signed URL, then a capped,
streamed download that never follows a redirect and never leaves the Supabase host.

Some names the storage server accepts cannot be fetched through a signed URL: one with a
`?` never verifies (storage-api v1.70.6 answers 400 InvalidSignature), and storage3 2.34
strips a leading `/` and drops empty segments (`a//b`, a trailing `/`) before it signs, so
the server signs another name and answers NoSuchKey. Those, and any signed URL the server
refuses, are read through the authenticated route with the service key instead (the request
built here, each segment percent-encoded, none dropped), under the same cap."""

import logging
from urllib.parse import quote

import httpx
from storage3.exceptions import StorageApiError
from supabase import AsyncClient

from app.core.bounded import read_stream
from app.core.config import Settings
from app.core.errors import PermanentError, RetryableError
from app.core.keys import ApiKey

log = logging.getLogger(__name__)
# storage-api's answers to a signed URL it cannot verify: not the object's fault, and the
# authenticated route still serves it
UNUSABLE_SIGNATURE = frozenset({"InvalidSignature", "InvalidRequest", "InvalidJWT"})


class SignedUrlRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class ObjectFetcher:
    def __init__(
        self,
        client: AsyncClient,
        supabase_url: str,
        *,
        service_key: ApiKey,
        max_bytes: int,
        signed_url_ttl: int,
        timeout: float,
    ) -> None:
        self._client = client
        self._origin = httpx.URL(supabase_url)
        self._max_bytes = max_bytes
        self._ttl = signed_url_ttl
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._auth = service_key.headers()

    @classmethod
    def from_settings(cls, client: AsyncClient, settings: Settings) -> "ObjectFetcher":
        url, service_key = settings.supabase_credentials()
        return cls(
            client,
            url,
            service_key=service_key,
            max_bytes=settings.max_image_bytes,
            signed_url_ttl=settings.signed_url_ttl,
            timeout=settings.download_timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, bucket: str, path: str) -> bytes:
        """The object's bytes. Raises PermanentError (gone, too large) or RetryableError."""
        if reason := unsignable(path):
            log.info("%s/%s: %s cannot be signed; authenticated download", bucket, path, reason)
            return await self.fetch_authenticated(bucket, path)
        try:
            return await self._download(await self.signed_url(bucket, path))
        except SignedUrlRefused as exc:
            log.warning(
                "%s/%s: storage refused its signed URL (%s); authenticated download",
                bucket,
                path,
                exc.code,
            )
            return await self.fetch_authenticated(bucket, path)

    async def fetch_authenticated(self, bucket: str, path: str) -> bytes:
        """The bytes through `GET /storage/v1/object/authenticated/<bucket>/<name>`."""
        _check_segments(path)
        url = self._origin.join(
            f"/storage/v1/object/authenticated/{quote(bucket, safe='')}/{quote(path, safe='/')}"
        )
        return await self._download(url, headers=self._auth)

    async def signed_url(self, bucket: str, path: str) -> str:
        _check_segments(path)
        # storage3 percent-DEcodes the path it is given: encode it first, so the name that
        # gets signed is exactly the object's
        key = quote(path, safe="/")
        try:
            signed = await self._client.storage.from_(bucket).create_signed_url(key, self._ttl)
        except StorageApiError as exc:
            if _is_not_found(exc):
                raise PermanentError(f"object {bucket}/{path} not found (deleted?)") from None
            raise RetryableError(f"signing URL failed: {exc.status} {exc.message}") from None
        except httpx.HTTPError as exc:
            raise RetryableError(f"signing URL failed: {type(exc).__name__}: {exc}") from None
        url = signed.get("signedURL") or signed.get("signedUrl")
        if not url:
            raise RetryableError("storage returned no signed URL")
        if not self._same_origin(httpx.URL(url)):
            raise PermanentError("signed URL points outside the configured SUPABASE_URL")
        return url

    async def _download(self, url: str | httpx.URL, headers: dict[str, str] | None = None) -> bytes:
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise _status_error(response, signed=headers is None)
                return await read_stream(response, self._max_bytes)
        except httpx.HTTPError as exc:
            raise RetryableError(f"download failed: {type(exc).__name__}: {exc}") from None

    def _same_origin(self, url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (
            self._origin.scheme,
            self._origin.host,
            self._origin.port,
        )


def unsignable(path: str) -> str | None:
    """Why storage3 cannot sign this name as it is, or None."""
    if "?" in path:
        return "a name with '?'"
    if "" in path.split("/"):
        return "a name with an empty segment (a leading, trailing or double '/')"
    return None


def _check_segments(path: str) -> None:
    if any(part in (".", "..") for part in path.split("/")):
        # storage3 refuses such keys (ValueError) and URLs normalise them away: no
        # request can name them, so do not retry
        raise PermanentError(f"object name has a dot segment ('.' or '..'): {path!r}")


def _is_not_found(exc: StorageApiError) -> bool:
    return str(exc.status) == "404" or exc.code in ("not_found", "NoSuchKey")


def _status_error(response: httpx.Response, *, signed: bool) -> Exception:
    status = response.status_code
    if 300 <= status < 400:
        return PermanentError(
            f"download refused: redirect ({status}) to {response.headers.get('location')}"
        )
    body = _json_or_empty(response)
    if body.get("code") == "NoSuchKey" or str(body.get("statusCode")) == "404":
        return PermanentError("object not found (deleted?)")
    if signed and body.get("code") in UNUSABLE_SIGNATURE:
        return SignedUrlRefused(str(body["code"]))
    return RetryableError(f"download failed: HTTP {status} {response.text[:200]}")


def _json_or_empty(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
