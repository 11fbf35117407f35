"""Audit events as mobius-auditlog-py (the real package, from PyPI) builds and
publishes them, for auditrelay's mobius mapper tests.

    python mobius_events.py print              # the events as the publisher hands them over, one JSON per line
    python mobius_events.py post URL TOKEN     # published through an HTTP sender to URL (a webhook source)

Three events: one built with the fluent builder (a group change with payloads,
non-ASCII text and floats), one emitted by the package's ASGI middleware for a
request to a tiny app, and one the sender changes after it was sealed (its
hash no longer matches: the mapper must refuse it).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request

# The Kubernetes downward API, as a pod would have it (the package reads it).
os.environ.update(
    POD_NAMESPACE="billing", POD_NAME="billing-api-7d9f", CONTAINER_NAME="api", NODE_NAME="node-3"
)

from mobius_auditlog import AuditLogBuilder, AuditLogMiddleware, AuditLogPublisher
from mobius_auditlog import publisher as publisher_module


class Collect:
    """A sender that keeps what it is handed (``print`` mode)."""

    def __init__(self):
        self.sent = []

    def send(self, value, *, topic):
        self.sent.append(value)


class HttpSender:
    """A sender that POSTs each event as JSON: what a service points at the relay."""

    def __init__(self, url, token):
        self.url, self.token = url, token

    def send(self, value, *, topic):
        request = urllib.request.Request(
            self.url,
            data=json.dumps(value).encode("utf-8"),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()


TAMPERED_ID = "00000000-0000-4000-8000-00000000dead"


class Tampering:
    """Changes one event after the publisher sealed it."""

    def __init__(self, inner):
        self.inner = inner

    def send(self, value, *, topic):
        if value.get("id") == TAMPERED_ID:
            value = json.loads(json.dumps(value))
            value["subject"]["userid"] = "mallory"
        self.inner.send(value, topic=topic)


def builder_event():
    return (
        AuditLogBuilder()
        .envelope(tenantid="acme", traceid="4bf92f3577b34da6a3ce929d0e0e4736", transactionid="tx-7781")
        .subject(userid="u-1001", type="USER", groups=["billing-admins", "staff"])
        .object_ref(resource="groups", resourceid="g-7", apiversion="v2")
        .action(name="group.member_added", method="POST", severity="INFO", status="SUCCESS")
        .network(sourceip="203.0.113.9", useragent="billing-ui/4.2")
        .event_data(
            requestpayload={"member": "u-2002", "role": "approver", "note": "Zoë — café ✓", "limit": 1250.5},
            responsepayload={"members": 12, "ratio": 0.1},
            issensitive=True,
            compliancecategory="SOX",
        )
        .build()
    )


async def middleware_event(publisher):
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 403, "headers": []})
        await send({"type": "http.response.body", "body": b'{"detail":"not allowed"}'})

    middleware = AuditLogMiddleware(app, publisher=publisher, capture_payloads=True, compliance_category="PCI")
    scope = {
        "type": "http",
        "method": "DELETE",
        "path": "/invoices/inv-42",
        "headers": [
            (b"tenantid", b"acme"),
            (b"actionloguserid", b"svc-reconciler"),
            (b"requestertype", b"SERVICE"),
            (b"user-agent", b"python-httpx/0.27"),
            (b"x-b3-traceid", b"80f198ee56343ba864fe8b2a57d3eff7"),
        ],
        "client": ("198.51.100.23", 51512),
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await middleware(scope, receive, send)


def main():
    mode = sys.argv[1]
    collect = Collect()
    inner = collect if mode == "print" else HttpSender(sys.argv[2], sys.argv[3])
    publisher = AuditLogPublisher(Tampering(inner), signing_key="mobius-signing-key-1")
    publisher.publish(builder_event())
    asyncio.run(middleware_event(publisher))
    tampered = builder_event()
    tampered.id = TAMPERED_ID
    publisher.publish(tampered)
    # The publisher sends on a pool of two threads, in no set order.
    publisher_module._executor.shutdown(wait=True)
    # Builder, middleware, tampered.
    collect.sent.sort(key=lambda v: (v.get("id") == TAMPERED_ID, "kubernetes" in v))
    for value in collect.sent:
        print(json.dumps(value))


if __name__ == "__main__":
    main()
