"""The ingest HTTP service: `create_app()` builds a FastAPI app around an `IngestRuntime`."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from service.adapters import WEBHOOKS, AdapterError, Webhook
from service.auth import credential_from_headers
from service.body import parse_form, parse_json, read_body
from service.config import ServiceSettings, get_settings
from service.errors import IngestError, unauthorized, unprocessable
from service.intake import Receipt, RequestInfo
from service.metrics import IngestMetrics
from service.openapi import INGEST_PATHS, add_alert_schemas
from service.runtime import IngestRuntime
from service.sns import authenticate_sns
from warehouse.contracts import AlertRecord
from warehouse.registry import TenantOptions
from warehouse.timestamps import now_us

log = logging.getLogger(__name__)

_SECRET_HEADER_WORDS = (
    "auth", "key", "token", "secret", "signature", "password", "cookie", "credential", "session"
)


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(error: IngestError) -> Response:
    return json_response({"error": error.code, "detail": error.message}, error.status,
                        error.headers)


def safe_headers(request: Request) -> dict[str, str]:
    """Headers worth archiving: never anything that could carry a credential."""
    kept: dict[str, str] = {}
    for name, value in request.headers.items():
        if not any(word in name for word in _SECRET_HEADER_WORDS) and len(kept) < 64:
            kept[name] = value[:1024]
    return kept


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = IngestRuntime.build(settings)
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="Alert Whisperer ingest",
        version="1",
        summary="Signed, multi-tenant intake of monitoring alerts into a Parquet lake.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    _install_routes(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                             routes=app.routes)
        app.openapi_schema = add_alert_schemas(schema)
    return app.openapi_schema


def _install_routes(app: FastAPI) -> None:
    async def ingest_generic(request: Request) -> Response:
        return await ingest(request, WEBHOOKS["generic"])

    async def ingest_webhook(request: Request) -> Response:
        webhook = WEBHOOKS.get(request.path_params["source"])
        if webhook is None:
            return json_response({"error": "not_found", "detail": "unknown webhook source; "
                                  f"one of: {', '.join(sorted(WEBHOOKS))}"}, 404)
        return await ingest(request, webhook)

    # Plain Starlette routes: the handler reads the raw body itself, so FastAPI's parameter
    # solving would be pure overhead on the hottest path (~15 % of a single-alert request).
    # Their OpenAPI operations are added by `add_alert_schemas`.
    for path in INGEST_PATHS:
        app.router.add_route(path, ingest_generic, methods=["POST"])
    app.router.add_route("/v1/webhooks/{source}", ingest_webhook, methods=["POST"])

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """The process is up."""
        return json_response({"status": "ok"}, 200)

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> Response:
        """The buffer has room and the lake is writable."""
        ok, status = request.app.state.runtime.ready()
        return json_response({"status": "ok" if ok else "unavailable", **status},
                             200 if ok else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics(request: Request) -> Response:
        """Prometheus text exposition."""
        registry = request.app.state.runtime.metrics.registry
        return Response(generate_latest(registry), 200, media_type=CONTENT_TYPE_LATEST)


async def ingest(request: Request, webhook: Webhook) -> Response:
    """The intake pipeline: credential → media type → body → signature → alerts → quota →
    durable buffer. Each step raises an IngestError saying what the sender should do."""
    runtime: IngestRuntime = request.app.state.runtime
    caller = _Caller()
    try:
        if webhook.auth == "sns":
            return await _ingest_sns(request, runtime, webhook, caller)
        return await _ingest_keyed(request, runtime, webhook, caller)
    except ClientDisconnect:
        return _refuse(runtime, caller, IngestError(400, "client_disconnected", "client went away"))
    except IngestError as error:
        return _refuse(runtime, caller, error)


async def _ingest_keyed(
    request: Request, runtime: IngestRuntime, webhook: Webhook, caller: _Caller
) -> Response:
    """Every source whose tenant is named by an API key (signed or not)."""
    headers = request.headers
    options = _authenticate(runtime, headers, caller)
    is_form = _check_content_type(headers.get("content-type"), webhook)
    body = await read_body(request.stream(), headers, runtime.settings.max_body_bytes)
    if webhook.auth == "signed" and (
        options.require_signature or headers.get("x-signature") is not None
    ):
        _verify_signature(runtime, headers, body, caller)
    if webhook.verify is not None:
        webhook.verify(caller.tenant, headers, body, runtime.auth.snapshot())
    received_us = now_us()
    document = parse_form(body) if is_form else parse_json(body)
    try:
        records = webhook.normalize(document, received_us)
    except AdapterError as exc:
        raise unprocessable(str(exc)) from None
    return await _accept(request, runtime, webhook, caller, options, body, received_us, records)


async def _ingest_sns(
    request: Request, runtime: IngestRuntime, webhook: Webhook, caller: _Caller
) -> Response:
    """CloudWatch via SNS: the SNS signature and the topic allowlist name the tenant; a
    confirmation is answered 200, a notification goes through the same intake (202)."""
    headers = request.headers
    _check_content_type(headers.get("content-type"), webhook)
    body = await read_body(request.stream(), headers, runtime.settings.max_body_bytes)
    received_us = now_us()
    outcome = await authenticate_sns(
        body, headers, runtime.auth.snapshot(), runtime.settings, received_us=received_us
    )
    caller.tenant = outcome.tenant_id
    if outcome.records is None:
        return json_response({"status": outcome.kind, "detail": outcome.note}, 200)
    options = runtime.auth.options(caller.tenant)
    return await _accept(
        request, runtime, webhook, caller, options, body, received_us, outcome.records
    )


async def _accept(
    request: Request, runtime: IngestRuntime, webhook: Webhook, caller: _Caller,
    options: TenantOptions, body: bytes, received_us: int, records: list[AlertRecord],
) -> Response:
    """Quota, then the durable intake; 202 with the receipt once every event is on disk."""
    _take_quota(runtime, caller.tenant, options, len(records))
    info = RequestInfo(
        tenant_id=caller.tenant, route=webhook.route, received_us=received_us, body=body,
        body_sha256=hashlib.sha256(body).hexdigest(),
        content_type=request.headers.get("content-type"), headers=safe_headers(request),
    )
    receipt = await runtime.intake.submit(info, records)
    _count_accepted(runtime.metrics, caller.tenant, webhook.route, records, receipt)
    return json_response(receipt.as_json(), 202)


@dataclass
class _Caller:
    """Who is calling, as far as the pipeline got (for metrics and replay bookkeeping)."""

    tenant: str = "-"
    signature: bytes | None = None


def _authenticate(runtime: IngestRuntime, headers: Headers, caller: _Caller) -> TenantOptions:
    # The timestamp is checked before the key, so its answer says nothing about the key.
    runtime.auth.check_timestamp(headers.get("x-timestamp"))
    credential = credential_from_headers(headers)
    tenant = runtime.auth.tenant_for_key(credential.api_key)
    if tenant is None or credential.basic_user not in (None, tenant):
        raise unauthorized()  # a basic-auth user must be the key's own tenant
    caller.tenant = tenant
    return runtime.auth.options(tenant)


def _verify_signature(
    runtime: IngestRuntime, headers: Headers, body: bytes, caller: _Caller
) -> None:
    auth = runtime.auth
    signature = auth.verify_signature(
        caller.tenant, headers.get("x-timestamp"), headers.get("x-signature"), body
    )
    if not auth.replays.check_and_add(caller.tenant, signature, auth.clock()):
        raise IngestError(409, "replay", "this signed request was already received")
    caller.signature = signature  # ours now: forgotten again if we fail retryably


def _take_quota(runtime: IngestRuntime, tenant: str, options: TenantOptions, events: int) -> None:
    wait = runtime.limiter.take(
        tenant, events, options.rate_limit_per_second, options.rate_limit_burst
    )
    if wait > 0:
        raise IngestError(
            429, "rate_limited",
            f"tenant is over its rate of {options.rate_limit_per_second:g} events/s",
            {"Retry-After": runtime.limiter.retry_after_header(wait)},
        )


def _refuse(runtime: IngestRuntime, caller: _Caller, error: IngestError) -> Response:
    runtime.metrics.rejected.labels(caller.tenant, error.code).inc()
    if caller.signature is not None and error.retryable:
        # A 429/503 asks the sender to retry the same bytes: that retry is not a replay.
        runtime.auth.replays.forget(caller.tenant, caller.signature)
    return error_response(error)


def _count_accepted(
    metrics: IngestMetrics, tenant: str, route: str, records: list[AlertRecord],
    receipt: Receipt,
) -> None:
    metrics.requests.labels(tenant, route).inc()
    metrics.accepted.labels(tenant, records[0].source).inc(len(records))
    for dup in receipt.duplicate_events:
        metrics.duplicates.labels(tenant, dup["reason"]).inc()


def _check_content_type(content_type: str | None, webhook: Webhook) -> bool:
    """Refuse other media types (415); True when the body is a form (Datadog's option)."""
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = params.strip().lower().replace(" ", "")
    if charset and charset not in ("charset=utf-8", 'charset="utf-8"'):
        raise IngestError(415, "unsupported_media_type", "the body must be UTF-8")
    if webhook.forms and media == "application/x-www-form-urlencoded":
        return True
    if media not in webhook.media_types:
        raise IngestError(
            415, "unsupported_media_type",
            f"Content-Type must be {' or '.join(webhook.media_types)} for {webhook.route}",
        )
    return False


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return json_response({"error": code, "detail": str(exc.detail)}, exc.status_code,
                             dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return json_response({"error": "invalid_request", "detail": str(exc.errors()[:3])}, 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # A bug of ours, not the client's: log it (without the request), answer briefly.
        log.exception("unexpected error on %s", request.url.path)
        return json_response({"error": "internal_error", "detail": "internal error"}, 500)
