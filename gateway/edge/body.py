"""Reading a request body under a size limit, without reading past it."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import BadRequest


class BodyTooLarge(BadRequest):
    """The body (announced or sent) is larger than the limit; each protocol answers it
    in its own form (a SOAP fault, an HTTP 413)."""


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    if request.content_length is not None and request.content_length > max_bytes:
        raise BodyTooLarge(f"request body larger than {max_bytes} bytes")
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > max_bytes:
            raise BodyTooLarge(f"request body larger than {max_bytes} bytes")
    return bytes(data)
