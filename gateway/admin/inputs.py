"""Reading admin requests strictly: JSON bodies and query strings, field by field.

Unknown fields and query parameters are refused rather than ignored, so a typo in a
filter (say, of a bulk revocation) fails loudly instead of matching everything.
Every problem is a :class:`BadRequest` naming the offending field.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Iterable, Mapping

from aiohttp import web

from ..errors import BadRequest

MAX_BODY = web.AppKey("admin_max_body", int)
MAX_PAGE = 500
DEFAULT_PAGE = 100
MAX_OFFSET = 2**53 - 1
"""Largest page offset: beyond any store row count, within every database integer and JSON number."""
SERIAL_PATTERN = r"^(0[xX])?[0-9A-Fa-f]+(:[0-9A-Fa-f]+)*$"
"""A hex serial as the admin API takes it: optional ``0x``, colons between digit groups."""
_SERIAL = re.compile(SERIAL_PATTERN)
NONBLANK_PATTERN = r"\S"
"""Text the server requires (``required_text``): at least one non-space character."""
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` when ``optional``.

    Bodies above the admin app's limit (``[server].max_body_bytes``) are refused (413)
    whether or not the client announced a length.
    """
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    buf = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        buf += chunk
        if len(buf) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(buf))
    raw = bytes(buf)
    if not raw.strip():
        if optional:
            return {}
        raise BadRequest("a JSON object is required as the request body")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    except RecursionError:  # nested deeper than the JSON parser's stack: not an admin request
        raise BadRequest("request body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def parse_time(value: str, where: str) -> dt.datetime:
    """ISO 8601 date or date-time; without an offset it is taken as UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{where} must be an ISO 8601 date or time, got {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def check_serial(value: str, where: str = "serial") -> str:
    """A serial as :data:`SERIAL_PATTERN` allows; anything else (``_``, ``+``, spaces,
    which ``int(x, 16)`` would take) is refused as the OpenAPI schema says."""
    if not _SERIAL.match(value):
        raise BadRequest(f"{where} must be a hexadecimal serial number, got {value!r}")
    return value


class Fields:
    """A JSON object read field by field; call :meth:`done` to refuse unknown fields.

    An explicit ``null`` is refused (the schema allows none) unless the field is named
    in ``nullable``, where it counts as absent.
    """

    def __init__(self, data: Mapping[str, Any], where: str = "body", *, nullable: Iterable[str] = ()) -> None:
        self._data = data
        self._where = where
        self._seen: set[str] = set()
        self._nullable = frozenset(nullable)

    def _label(self, name: str) -> str:
        return name if self._where == "body" else f"{self._where}.{name}"

    def raw(self, name: str, *, required: bool = False) -> Any:
        self._seen.add(name)
        value = self._data.get(name)
        if value is None and name in self._data and name not in self._nullable:
            raise BadRequest(f"{self._label(name)} must not be null (omit it instead)")
        if value is None and required:
            raise BadRequest(f"{self._label(name)} is required")
        return value

    def text(
        self, name: str, *, required: bool = False, default: str | None = None,
        choices: Iterable[str] | None = None, max_length: int | None = None,
    ) -> str | None:
        value = self.raw(name, required=required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise BadRequest(f"{self._label(name)} must be a string")
        if required and not value.strip():
            raise BadRequest(f"{self._label(name)} must not be empty")
        if max_length is not None and len(value) > max_length:
            raise BadRequest(f"{self._label(name)} must be at most {max_length} characters")
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise BadRequest(f"{self._label(name)} must be one of {allowed}")
        return value

    def required_text(
        self, name: str, *, choices: Iterable[str] | None = None, max_length: int | None = None
    ) -> str:
        value = self.text(name, required=True, choices=choices, max_length=max_length)
        assert value is not None
        return value

    def integer(
        self, name: str, *, default: int | None = None, minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema: 30.0 is an integer
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{self._label(name)} must be an integer")
        if minimum is not None and value < minimum:
            raise BadRequest(f"{self._label(name)} must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise BadRequest(f"{self._label(name)} must be at most {maximum}")
        return value

    def flag(self, name: str, *, default: bool | None = None) -> bool | None:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise BadRequest(f"{self._label(name)} must be true or false")
        return value

    def text_list(self, name: str, *, required: bool = False) -> list[str] | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"{self._label(name)} must be a list of strings")
        return list(value)

    def mapping(self, name: str, *, required: bool = False) -> dict[str, Any] | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise BadRequest(f"{self._label(name)} must be an object")
        return value

    def time(self, name: str) -> dt.datetime | None:
        value = self.text(name)
        return parse_time(value, self._label(name)) if value is not None else None

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise BadRequest(f"unknown field(s) in {self._where}: {', '.join(unknown)}")


class QueryArgs:
    """The query string read parameter by parameter; :meth:`done` refuses unknown ones."""

    def __init__(self, request: web.Request) -> None:
        self._query = request.query
        self._seen: set[str] = set()

    def text(self, name: str, *, choices: Iterable[str] | None = None) -> str | None:
        self._seen.add(name)
        values = self._query.getall(name, [])
        if not values:
            return None
        if len(values) > 1:
            raise BadRequest(f"query parameter {name} given more than once")
        value = values[0]
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise BadRequest(f"query parameter {name} must be one of {allowed}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise BadRequest(f"query parameter {name} must be an integer") from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise BadRequest(f"query parameter {name} must be {bound}")
        return number

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise BadRequest(f"query parameter {name} must be true or false")

    def time(self, name: str) -> dt.datetime | None:
        value = self.text(name)
        return parse_time(value, f"query parameter {name}") if value is not None else None

    def serial(self, name: str) -> str | None:
        value = self.text(name)
        return check_serial(value, f"query parameter {name}") if value is not None else None

    def page(self) -> tuple[int, int]:
        """``(limit, offset)`` with limit 1..500 (default 100)."""
        return (
            self.integer("limit", DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE),
            self.integer("offset", 0, minimum=0, maximum=MAX_OFFSET),
        )

    def done(self) -> None:
        unknown = sorted(set(self._query) - self._seen)
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")


def page(
    items: list[Any], limit: int, offset: int, *, total: int | None = None, more: bool | None = None
) -> dict[str, Any]:
    """A list response; ``next_offset`` is null on the last page."""
    if more is None:
        more = total is not None and offset + len(items) < total
    body: dict[str, Any] = {
        "items": items, "limit": limit, "offset": offset,
        "next_offset": offset + len(items) if more else None,
    }
    if total is not None:
        body["total"] = total
    return body


def page_in_memory(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """Paginate a short list the store returns whole (CAs, profiles, configs, requests)."""
    return page(items[offset : offset + limit], limit, offset, total=len(items))
