"""SendGrid's Event Webhook, as SendGrid posts it: a JSON array signed with ECDSA P-256 / SHA-256 over
timestamp + body, the public key shown base64 (DER) in Mail Settings."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


class EventSigner:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int) -> dict[str, str]:
        signature = self._key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp), "Content-Type": "application/json"}


def event(kind: str, mail: dict[str, Any], timestamp: int, **extra: Any) -> dict[str, Any]:
    """One event for a mail the fake SendGrid accepted; custom_args come back as top-level fields."""
    personalization = mail["personalizations"][0]
    return {"email": personalization["to"][0]["email"], "timestamp": timestamp, "event": kind,
            "sg_event_id": f"sgev-{kind}-{timestamp}", "sg_message_id": "sgmsg000001.filter0001",
            **mail.get("custom_args", {}), **personalization.get("custom_args", {}), **extra}


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()
