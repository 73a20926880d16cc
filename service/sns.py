"""Amazon SNS deliveries (CloudWatch alarms via SNS): message signature, certificate, tenant.

SNS cannot add headers, so the message authenticates itself: SNS signs a string built from
the message's fields with the private key of the certificate at `SigningCertURL`
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA). That URL must be an SNS host
(`https://sns.<region>.amazonaws.com/…pem`, `.com.cn` in China) *before* anything is
fetched; otherwise a forged message would name its own certificate. Certificates come from
`AW_SNS_CERT_DIR` when a file there has the URL's basename (pinned, never fetched), else
from SNS with a short timeout, cached in memory.

A valid signature proves that SNS sent the message, not whose topic it is: the tenant is the
one whose allowlist holds the verified `TopicArn` (`aw tenants set ID --sns-topic ARN`).
Credentials in the subscription URL (`https://TENANT:KEY@host/…`) are optional; when sent,
a wrong one is 401 and another tenant's valid one is 403.

Replays: the same `MessageId` twice is a duplicate delivery (it is the events' delivery id);
a replayed confirmation only confirms the same subscription again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from service.adapters import cloudwatch_sns
from service.adapters.common import AdapterError
from service.auth import credential_from_headers
from service.body import parse_json
from service.config import ServiceSettings
from service.errors import IngestError, unauthorized, unavailable, unprocessable
from service.sns_certificates import (
    FETCH_TIMEOUT_SECONDS,
    RETRY_AFTER_SECONDS,
    Fetch,
    SnsUnreachable,
    certificate_key,
    fetch_certificate,
    sns_url,
)
from warehouse.contracts import AlertRecord
from warehouse.registry import AuthSnapshot, validate_sns_topic
from warehouse.timestamps import now_us

MessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
Confirm = Callable[[str], Awaitable[None]]

# The fields SNS signs, in this order, each as "Key\nValue\n" (AWS: "Verifying the signatures
# of Amazon SNS messages"); Subject only when the notification has one.
_SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"
    ),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True)
class SnsMessage:
    """A verified SNS message: its type, topic and the fields the adapter needs."""

    type: MessageType
    message_id: str
    topic_arn: str
    message: str
    timestamp: str
    subject: str | None
    subscribe_url: str | None
    document: Mapping[str, Any]  # the whole envelope, as parsed


@dataclass(frozen=True)
class SnsOutcome:
    """What `authenticate_sns` decided: the tenant, what kind of message it was, and for a
    notification the canonical events to submit (None for the two confirmation types)."""

    tenant_id: str
    kind: Literal["notification", "subscription_confirmed", "unsubscribe_acknowledged"]
    records: list[AlertRecord] | None
    note: str | None = None  # for the 200 answer to a confirmation


def verify_message(body: bytes, cert_dir: Path | None, fetch: Fetch) -> SnsMessage:
    """Parse and verify an SNS message; IngestError (400/401/503) when it is not one.

    Blocking (it may fetch a certificate): call it from a worker thread.
    """
    document = parse_json(body)
    if not isinstance(document, dict) or "Type" not in document or "Signature" not in document:
        raise IngestError(
            401, "sns_unsigned",
            "not a signed SNS message: raw message delivery is not supported, disable "
            "RawMessageDelivery on the subscription",
        )
    kind = document["Type"]
    if kind not in _SIGNED_FIELDS:
        raise _bad(f"Type: unknown SNS message type {str(kind)[:40]!r}")
    version = document.get("SignatureVersion")
    if version not in _HASHES:
        raise _bad("SignatureVersion: must be \"1\" (SHA1withRSA) or \"2\" (SHA256withRSA)")
    cert_url = document.get("SigningCertURL")
    if not isinstance(cert_url, str) or sns_url(cert_url, certificate=True) is None:
        raise IngestError(
            401, "sns_untrusted_certificate",
            "SigningCertURL is not an https://sns.<region>.amazonaws.com/….pem URL",
        )
    to_sign = string_to_sign(document)
    signature = _signature_bytes(document["Signature"])
    if not signature:  # refused before any certificate is fetched
        raise _bad_signature()
    key = certificate_key(cert_url, cert_dir, fetch)
    try:
        key.verify(signature, to_sign, padding.PKCS1v15(), _HASHES[version]())
    except InvalidSignature:
        raise _bad_signature() from None
    return _message(document)


def string_to_sign(document: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs for this message: "Key\\nValue\\n" per signed field, in order."""
    parts: list[str] = []
    for name in _SIGNED_FIELDS[document["Type"]]:
        if name == "Subject" and document.get(name) is None:
            continue  # signed only when the notification has a subject
        value = document.get(name)
        if not isinstance(value, str):
            raise _bad(f"{name}: missing or not a string")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


async def authenticate_sns(
    body: bytes,
    headers: Mapping[str, str],
    snapshot: AuthSnapshot,
    settings: ServiceSettings,
    *,
    received_us: int | None = None,
    fetch: Fetch | None = None,
    confirm: Confirm | None = None,
) -> SnsOutcome:
    """Verify an SNS delivery, find its tenant, and act on it.

    `headers` is case-insensitive (Starlette's) or has lower-case names. Notification →
    the CloudWatch alarm's canonical event (delivery id = MessageId);
    SubscriptionConfirmation → confirmed by a GET of `SubscribeURL`;
    UnsubscribeConfirmation → acknowledged. Raises IngestError: 400 malformed, 401 unsigned,
    bad signature, untrusted certificate URL or bad credential, 403 unknown topic or another
    tenant's credential, 422 not a CloudWatch alarm, 503 certificate or confirmation
    unreachable (SNS retries).
    """
    message = await asyncio.to_thread(
        verify_message, body, settings.sns_cert_dir, fetch or fetch_certificate
    )
    tenant_id = resolve_tenant(message, headers, snapshot)
    if message.type == "SubscriptionConfirmation":
        await _confirm(message, confirm or confirm_subscription)
        return SnsOutcome(tenant_id, "subscription_confirmed", None,
                          f"subscription to {message.topic_arn} confirmed")
    if message.type == "UnsubscribeConfirmation":
        return SnsOutcome(tenant_id, "unsubscribe_acknowledged", None,
                          f"unsubscribe from {message.topic_arn} acknowledged")
    try:
        records = cloudwatch_sns.normalize(
            message.document, now_us() if received_us is None else received_us
        )
    except AdapterError as exc:
        raise unprocessable(str(exc)) from None
    return SnsOutcome(tenant_id, "notification", records)


def resolve_tenant(
    message: SnsMessage, headers: Mapping[str, str], snapshot: AuthSnapshot
) -> str:
    """The owner of the verified TopicArn; credentials, if sent, must be that tenant's."""
    tenant_id = snapshot.tenant_for_topic(message.topic_arn)
    if tenant_id is None:
        raise IngestError(
            403, "sns_unknown_topic",
            f"no tenant accepts SNS topic {message.topic_arn}; allow it with "
            "`aw tenants set TENANT --sns-topic ARN`",
        )
    if headers.get("authorization") is None and headers.get("x-api-key") is None:
        return tenant_id
    credential = credential_from_headers(headers)
    key_tenant = snapshot.tenant_for_key(credential.api_key) if credential.api_key else None
    if key_tenant is None or credential.basic_user not in (None, key_tenant):
        raise unauthorized()
    if key_tenant != tenant_id:
        raise IngestError(
            403, "sns_tenant_mismatch", "the credential's tenant does not own this SNS topic"
        )
    return tenant_id


async def confirm_subscription(url: str) -> None:
    """GET the SubscribeURL (already checked to be an SNS host), short timeout."""
    try:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS,
                                     follow_redirects=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise SnsUnreachable(type(exc).__name__) from None
    if response.status_code != 200:
        raise SnsUnreachable(f"HTTP {response.status_code}")


def _signature_bytes(value: Any) -> bytes:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        return b""  # refused as a bad signature: one answer for every bad signature


def _message(document: Mapping[str, Any]) -> SnsMessage:
    topic = document["TopicArn"]  # a string: string_to_sign checked every signed field
    try:
        validate_sns_topic(topic)
    except ValueError:
        raise _bad("TopicArn: not an SNS topic ARN") from None
    if topic.endswith(":*"):
        raise _bad("TopicArn: not an SNS topic ARN")
    subject = document.get("Subject")
    return SnsMessage(
        type=document["Type"], message_id=document["MessageId"], topic_arn=topic,
        message=document["Message"], timestamp=document["Timestamp"],
        subject=subject if isinstance(subject, str) else None,
        subscribe_url=document.get("SubscribeURL"), document=document,
    )


async def _confirm(message: SnsMessage, confirm: Confirm) -> None:
    url = message.subscribe_url
    if url is None or sns_url(url, certificate=False) is None:
        raise _bad("SubscribeURL is not an https://sns.<region>.amazonaws.com URL; not confirmed")
    try:
        await confirm(url)
    except SnsUnreachable as exc:
        raise unavailable(
            f"cannot confirm the SNS subscription now ({exc})", RETRY_AFTER_SECONDS
        ) from None


def _bad_signature() -> IngestError:
    return IngestError(401, "sns_bad_signature", "the SNS message signature is not valid")


def _bad(message: str) -> IngestError:
    return IngestError(400, "invalid_sns_message", message)
