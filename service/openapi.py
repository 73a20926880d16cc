"""OpenAPI documentation of the ingest routes (the body is read raw, so it is declared here)."""

from __future__ import annotations

from typing import Any

from warehouse.contracts import CanonicalAlertIn

_REF = {"$ref": "#/components/schemas/CanonicalAlertIn"}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


ALERTS_OPENAPI: dict[str, Any] = {
    "description": (
        "One canonical alert object or an array of them (at most 10,000, 1 MiB). "
        "Authenticate with `Authorization: Bearer <api key>` or `X-API-Key`. Unless the "
        "tenant opted out, sign: `X-Timestamp: <unix seconds>` and `X-Signature: sha256=<hex "
        "of HMAC-SHA256(hmac secret, \"<timestamp>.<raw body>\")>`. Gzip/deflate bodies are "
        "accepted (`Content-Encoding`)."
    ),
    "parameters": [
        {"name": "X-Timestamp", "in": "header", "required": False,
         "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
         "description": "Unix seconds; within ±300 s of the server clock."},
        {"name": "X-Signature", "in": "header", "required": False,
         "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}},
        {"name": "X-API-Key", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [_REF, {"type": "array", "items": _REF, "minItems": 1}]},
                "examples": {
                    "one": {"value": CanonicalAlertIn.model_config["json_schema_extra"]
                            ["examples"][0]},  # type: ignore[index]
                    "batch": {"value": [
                        {"asset": "web01", "signature": "disk_full", "severity": "critical"},
                        {"asset": "web02", "signature": "disk_full"},
                    ]},
                },
            }
        },
    },
    "responses": {
        "202": {
            "description": "Durable: every event is on disk. Lists new ids and duplicates.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Receipt"}}},
        },
        "400": _error("Malformed body: not JSON, duplicate keys, NUL, bad encoding"),
        "401": _error("Unknown API key or missing/wrong signature (one answer for all)"),
        "409": _error("The same signed request was already received"),
        "413": _error("Body (or inflated body) over the limit"),
        "415": _error("Not application/json, or an unsupported Content-Encoding"),
        "422": _error("Valid JSON that is not a valid alert"),
        "429": _error("Tenant over its rate limit; see Retry-After"),
        "503": _error("Cannot make the alert durable now; retry after Retry-After"),
    },
}

_RECEIPT = {
    "type": "object",
    "required": ["request_id", "accepted", "duplicates", "ids", "duplicate_events"],
    "properties": {
        "request_id": {"type": "string"},
        "accepted": {"type": "integer", "description": "New events stored"},
        "duplicates": {"type": "integer", "description": "Exact duplicates (R2), not stored"},
        "ids": {"type": "array", "items": {"type": "string"}},
        "duplicate_events": {"type": "array", "items": {
            "type": "object",
            "properties": {
                "index": {"type": "integer"}, "event_id": {"type": "string"},
                "duplicate_of": {"type": "string"},
                "reason": {"type": "string", "enum": ["delivery_id", "body_hash"]},
            },
        }},
    },
}


INGEST_PATHS = {"/v1/alerts": "post_alerts", "/v1/webhooks/generic": "post_webhook_generic"}


def add_alert_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operation_id in INGEST_PATHS.items():
        schema.setdefault("paths", {})[path] = {"post": {
            "summary": "Submit canonical alerts", "tags": ["ingest"],
            "operationId": operation_id, **ALERTS_OPENAPI,
        }}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["CanonicalAlertIn"] = CanonicalAlertIn.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["Receipt"] = _RECEIPT
    components["Error"] = _ERROR
    schema["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    return schema
