"""Events the real mobius-auditlog-py 1.0.0 builds and publishes, for
plugins/mobius/tests/attacks.rs (an outside review of the mobius mapper).

    target/py/bin/python plugins/mobius/tests/samples/attacks/generate.py

Writes, next to this script, one `<case>.json` per case holding exactly the
bytes a sender POSTs (`json.dumps(event.to_dict())`, the sender in
tests/python/mobius_events.py, unless the case says otherwise), and
`cases.json`: for each case whether the package's own `verify()` accepts the
event after it went through JSON (the oracle: a case it accepts is a valid
event, and the mapper must take it), and how it was made.

Two kinds of event: built with the fluent builder and a payload, and emitted
by the package's ASGI middleware for a request whose JSON body the client
chose (`capture_payloads=True`): anyone who can call the audited service
chooses that body.
"""
from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import os
import sys
import uuid
from pathlib import Path

os.environ.update(
    POD_NAMESPACE="billing", POD_NAME="billing-api-7d9f", CONTAINER_NAME="api", NODE_NAME="node-3"
)

from mobius_auditlog import AuditLogBuilder, AuditLogEvent, AuditLogMiddleware, AuditLogPublisher, verify
from mobius_auditlog import publisher as publisher_module

HERE = Path(__file__).resolve().parent
SIGNING_KEY = "mobius-signing-key-1"


class Collect:
    def __init__(self):
        self.sent = []

    def send(self, value, *, topic):
        self.sent.append(value)


def published(event=None, *, body=None):
    """What the publisher hands the sender: for `event` (built), or for the
    middleware's event of a POST with `body` (bytes)."""
    collect = Collect()
    publisher = AuditLogPublisher(collect, signing_key=SIGNING_KEY)
    if event is not None:
        publisher.publish(event)
    else:
        async def app(scope, receive, send):
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b'{"ok":true}'})

        middleware = AuditLogMiddleware(app, publisher=publisher, capture_payloads=True, compliance_category="PCI")
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/orders",
            "headers": [
                (b"tenantid", b"acme"),
                (b"actionloguserid", b"u-1001"),
                (b"requestertype", b"USER"),
                (b"content-type", b"application/json"),
            ],
            "client": ("198.51.100.23", 51512),
        }
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            pass

        asyncio.run(middleware(scope, receive, send))
    # The publisher sends on its pool of threads.
    publisher_module._executor.shutdown(wait=True)
    publisher_module._executor = type(publisher_module._executor)(max_workers=2)
    assert len(collect.sent) == 1, collect.sent
    return collect.sent[0]


def built(payload, response=None):
    return (
        AuditLogBuilder()
        .envelope(tenantid="acme", traceid="4bf92f3577b34da6a3ce929d0e0e4736", transactionid="tx-7781")
        .subject(userid="u-1001", type="USER", groups=["billing-admins"])
        .object_ref(resource="orders", resourceid="o-1", apiversion="v2")
        .action(name="order.updated", method="PUT", severity="INFO", status="SUCCESS")
        .event_data(requestpayload=payload, responsepayload=response or {}, issensitive=False)
        .build()
    )


def deep(levels):
    value = {"leaf": 1}
    for n in range(levels):
        value = {"l": [value]} if n % 2 else {"l": value}
    return value


ODD = {
    "emoji": "😀 👩‍👩‍👧 🇳🇿",
    "controls": "\x00\x01\x07\b\t\n\x0b\x0c\r\x1b\x1f\x7f\x80\x9f",
    "separators": "\u2028\u2029\ufeff\ufffe\uffff",
    "nfd": "e\u0301 vs \u00e9",
    "quotes": "\"\\/'<>&",
    "big_ints": [2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1],
    "floats": [1e16, 1.5e16, -0.0, 5e-324, 1e-7, 1.7976931348623157e308, 0.1 + 0.2, 1e22, 123456.789, 2.2250738585072014e-308, 1e15, 0.0001, 0.00001],
    "nested_empty": {"a": {}, "b": [], "c": None, "d": "", "e": {"f": {"g": None}}, "h": [{}, [], None, "", {"i": None}]},
    "falsy": [False, 0, 0.0, [0], {"z": False}],
    "security": {"hash": "not-the-real-one", "signature": "x"},
    "keys": {"B": 1, "a": 2, "_": 3, "é": 4, "Z": 5, "\u00ff": 6, "\u0100": 7, "\uffee": 8},
}


def cases():
    yield "odd_payload_built", "builder: emoji, control characters, 64-bit ints, floats, nested empty values, None, a nested security key", None, built(ODD, {"list": [None, {}, []]})
    yield "odd_payload_middleware", "middleware: the same payload as a request body", None, json.dumps(ODD).encode()
    yield "odd_payload_ensure_ascii_false", "builder, a sender writing json.dumps(value, ensure_ascii=False, indent=2)", {"ensure_ascii": False, "indent": 2}, built(ODD)
    yield "odd_payload_default_str", "builder with a datetime, a Decimal and a UUID; a sender writing json.dumps(value, default=str)", {"default": str}, built({"at": datetime.datetime(2026, 12, 4, 3, 1, 7, tzinfo=datetime.timezone.utc), "amount": decimal.Decimal("1250.10"), "ref": uuid.UUID(int=7)})
    yield "astral_keys_built", "builder: payload keys U+FF71 and U+1F600 (Python sorts by code point)", None, built({"\uff71": "halfwidth katakana", "\U0001F600": "emoji", "\ue000": "private use"})
    yield "astral_keys_middleware", "middleware: a request body with keys U+FF71 and U+1F600", None, '{"\uff71": 1, "\U0001F600": 2}'.encode()
    yield "int_2_64_built", "builder: an integer 2**64", None, built({"n": 2**64})
    yield "int_below_i64_built", "builder: an integer -2**63 - 1", None, built({"n": -(2**63) - 1})
    yield "int_big_middleware", "middleware: a request body with a 30-digit order id", None, b'{"order_id": 123456789012345678901234567890}'
    yield "nan_built", "builder: float('nan') in the payload (json.dumps writes NaN)", None, built({"ratio": float("nan")})
    yield "infinity_middleware", "middleware: a request body with 1e400 (json.loads reads inf, json.dumps writes Infinity)", None, b'{"amount": 1e400}'
    yield "lone_surrogate_middleware", "middleware: a request body with a lone surrogate escape (json.loads keeps it)", None, b'{"name": "\\ud800"}'
    yield "deep_middleware", "middleware: a request body nested 200 levels (json.loads reads up to ~1000)", None, json.dumps(deep(200)).encode()
    yield "deep_built", "builder: a payload nested 140 levels", None, built(deep(140))
    yield "tuple_built", "builder: a tuple holding a dict with None (prune_empty does not descend into tuples)", None, built({"t": ({"a": None},), "e": ()})
    yield "int_keys_built", "builder: a nested dict with int keys 2 and 10 (sort_keys sorts them as numbers)", None, built({"k": {2: "a", 10: "b"}})


def main():
    manifest = {}
    for name, how, dumps, source in cases():
        value = published(body=source) if isinstance(source, bytes) else published(source)
        wire = json.dumps(value, **(dumps or {}))
        (HERE / f"{name}.json").write_bytes(wire.encode("utf-8"))
        try:
            verifies = verify(AuditLogEvent.model_validate(json.loads(wire)), SIGNING_KEY)
        except Exception as error:  # noqa: BLE001
            verifies = f"error: {error!r}"
        manifest[name] = {"how": how, "python_verifies": verifies}
        print(name, verifies, file=sys.stderr)
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
