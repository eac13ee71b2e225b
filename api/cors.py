"""CORS for the read side of the graph (SPARQL queries, Graph Store GET, VoID): configurable origins.

Only reads are shared cross-origin. Preflights never allow the `Authorization` header, so a browser on
another origin cannot send an update with a key; simple cross-origin writes fail authentication anyway.
"""

from fastapi import Request, Response

EXPOSED_HEADERS = "Content-Type, Content-Length, QIHUB-Results-Truncated, QIHUB-Result-Count"


def _allowed_origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if not origin:
        return None
    allowed: list[str] = request.app.state.settings.cors_origins
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def cors_headers(request: Request) -> dict[str, str]:
    """Headers letting an allowed origin read this response (empty when there is no allowed Origin)."""
    origin = _allowed_origin(request)
    if origin is None:
        return {}
    # Responses that carry these also say `Vary: Origin` (set by the routes, next to `Accept`).
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS}


def preflight(request: Request, *, methods: str) -> Response:
    """Answer a CORS preflight for read methods; other methods or origins get no permission."""
    headers = cors_headers(request)
    wanted = request.headers.get("access-control-request-method", "").upper()
    if not headers or wanted not in {method.strip() for method in methods.split(",")}:
        return Response(status_code=204, headers={"Allow": f"{methods}, OPTIONS"})
    headers.update(
        {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Accept, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
            "Allow": f"{methods}, OPTIONS",
        }
    )
    return Response(status_code=204, headers=headers)
