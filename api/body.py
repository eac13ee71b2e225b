"""Reading request bodies within the size cap, and choosing response media types from Accept."""

from fastapi import Request

from api.errors import ProblemError


async def read_body_limited(request: Request, *, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `max_bytes` (never buffered past it)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ProblemError(413, "too-large", f"The body is {declared} bytes; the limit is {max_bytes}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ProblemError(413, "too-large", f"The body exceeds the limit of {max_bytes} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise ProblemError(400, "empty-body", "The request body is empty.")
    return body


def media_type_of(request: Request) -> str:
    """The request's media type without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def negotiate(accept: str | None, offers: list[str]) -> str | None:
    """The offer the Accept header prefers (q-values, wildcards); first offer when Accept is absent."""
    if not accept or not accept.strip():
        return offers[0]
    ranges: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        fields = [field.strip() for field in part.split(";")]
        media_range = fields[0].lower()
        quality = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_range:
            ranges.append((quality, position, media_range))
    best_offer: str | None = None
    best_quality = 0.0
    for offer in offers:
        offer_type = offer.partition("/")[0]
        # The most specific matching range decides an offer's quality (RFC 9110 §12.5.1).
        matching = [
            (2 if media_range == offer else 1 if media_range == f"{offer_type}/*" else 0, quality)
            for quality, _position, media_range in ranges
            if media_range in (offer, f"{offer_type}/*", "*/*")
        ]
        if not matching:
            continue
        quality = max(matching)[1]
        if quality > best_quality:
            best_offer, best_quality = offer, quality
    return best_offer
