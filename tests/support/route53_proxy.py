"""A front for moto that makes its Route53 behave like the real one.

Usage: route53_proxy.py PORT MOTO_URL INSYNC_SECONDS LOG_FILE [RATE [JOURNAL [PRIOR_SECONDS]]]

moto answers INSYNC at once and hands out one constant change id; real
Route53 keeps a change PENDING for up to a minute ("changes generally
propagate within 60 seconds") and allows 5 API requests per second per
account. Every request is passed to moto unchanged (so the real SDK path
and moto's validation stay), except that for the Route53 API
(/2013-04-01/...):

- ChangeResourceRecordSets answers PENDING with a fresh change id;
- GetChange answers PENDING until INSYNC_SECONDS after that change, then
  INSYNC; an id it never handed out is NoSuchChange (404);
- one account-wide token bucket (RATE per second, default 5, burst the
  same) answers HTTP 400 Throttling "Rate exceeded" above it;
- ListResourceRecordSets names wildcards `\\052.` as Route53 does (moto
  says `*.`);
- with PRIOR_SECONDS > 0, a change to a zone that comes within that long of
  the zone's last accepted change answers HTTP 400 PriorRequestNotComplete,
  as Route53 does while it is still processing the previous request for
  the zone ("wait, in intervals of increasing duration, and retry").

Other services (S3, SSM, ...) pass through untouched and unthrottled.
LOG_FILE gets one line per Route53 request: `<unix time> <status> <action>`.
JOURNAL, when given, gets one JSON line per record set that a successful
ChangeResourceRecordSets left: `{"zone", "name", "type", "ttl", "values"}`
(`values` empty when the set was deleted), in the order moto applied them.
The DNS responder of the tests (tests/support/dns.rs) answers from it, so
what it serves is exactly what went through this API, without a moto call
per question. It serves a value as soon as moto holds it, which is earlier
than real Route53's nameservers would; certkeeper's own propagation check is
what waits for them. Binds 127.0.0.1 only.
"""
import itertools
import json
import re
import xml.etree.ElementTree as ET
import sys
import threading
import time
import urllib.parse

from http_front import Handler, Upstream, serve

PORT = int(sys.argv[1])
MOTO = Upstream(sys.argv[2])
INSYNC = float(sys.argv[3])
LOG = open(sys.argv[4], "a", buffering=1)
RATE = float(sys.argv[5]) if len(sys.argv) > 5 else 5.0
JOURNAL = open(sys.argv[6], "a", buffering=1) if len(sys.argv) > 6 and sys.argv[6] else None
PRIOR = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
last_change = {}  # zone id -> when its last change was accepted (monotonic)

lock = threading.Lock()
# Changes go to moto one at a time, so the journal's order is moto's.
change_lock = threading.Lock()
changes = {}  # change id -> submitted at (monotonic)
ids = itertools.count(1)
tokens = RATE
refilled = time.monotonic()

CHANGE_PATH = re.compile(r"^/2013-04-01/hostedzone/[^/]+/rrset/?$")
GET_CHANGE = re.compile(r"^/2013-04-01/change/([^/?]+)")
NS = "https://route53.amazonaws.com/doc/2013-04-01/"


def take_token():
    global tokens, refilled
    with lock:
        now = time.monotonic()
        tokens = min(RATE, tokens + (now - refilled) * RATE)
        refilled = now
        if tokens >= 1:
            tokens -= 1
            return True
        return False


def journal(zone, request):
    """One line per record set the accepted change left (see the module doc)."""
    if JOURNAL is None:
        return
    ns = {"r": NS}
    lines = []
    for change in ET.fromstring(request).iterfind(".//r:Change", ns):
        action = change.findtext("r:Action", "", ns)
        rrset = change.find("r:ResourceRecordSet", ns)
        if rrset is None:
            continue
        values = [v.text or "" for v in rrset.iterfind(".//r:ResourceRecord/r:Value", ns)]
        lines.append(json.dumps({
            "zone": zone,
            "name": rrset.findtext("r:Name", "", ns).rstrip(".").replace("\\052", "*").lower(),
            "type": rrset.findtext("r:Type", "", ns),
            "ttl": int(rrset.findtext("r:TTL", "300", ns)),
            "values": [] if action == "DELETE" else values,
        }))
    with lock:
        for line in lines:
            JOURNAL.write(line + "\n")


def error_xml(code, message):
    return (
        f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{time.time_ns():x}</RequestId></ErrorResponse>"
    ).encode()


def change_xml(change_id, status, submitted):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(submitted))
    return (
        f'<?xml version="1.0"?>\n<GetChangeResponse xmlns="{NS}"><ChangeInfo>'
        f"<Id>/change/{change_id}</Id><Status>{status}</Status>"
        f"<SubmittedAt>{stamp}</SubmittedAt></ChangeInfo></GetChangeResponse>"
    ).encode()


class Route53Handler(Handler):
    def forward(self, data):
        return MOTO.call(self.command, self.path, data, self.passed_headers())

    def handle_any(self):
        data = self.body()
        path = urllib.parse.urlparse(self.path).path
        if not path.startswith("/2013-04-01/"):
            status, headers, payload = self.forward(data)
            return self.send(status, headers, payload)
        action = self.command + " " + path
        if not take_token():
            LOG.write(f"{time.time():.3f} 400 Throttling {action}\n")
            return self.send(400, [("Content-Type", "text/xml")], error_xml("Throttling", "Rate exceeded"))
        get = GET_CHANGE.match(path)
        if get and self.command == "GET":
            change_id = get.group(1)
            with lock:
                submitted = changes.get(change_id)
            if submitted is None:
                LOG.write(f"{time.time():.3f} 404 GetChange {change_id}\n")
                return self.send(
                    404,
                    [("Content-Type", "text/xml")],
                    error_xml("NoSuchChange", f"A change with the specified change ID does not exist: {change_id}"),
                )
            pending = time.monotonic() - submitted < INSYNC
            status = "PENDING" if pending else "INSYNC"
            LOG.write(f"{time.time():.3f} 200 GetChange {change_id} {status}\n")
            wall = time.time() - (time.monotonic() - submitted)
            return self.send(200, [("Content-Type", "text/xml")], change_xml(change_id, status, wall))
        is_change = CHANGE_PATH.match(path) and self.command == "POST"
        if is_change:
            zone = path.split("/")[3]
            with change_lock:
                busy = PRIOR > 0 and time.monotonic() - last_change.get(zone, -1e9) < PRIOR
                if not busy:
                    status, headers, payload = self.forward(data)
                    if status == 200:
                        journal(zone, data)
                        last_change[zone] = time.monotonic()
            if busy:
                LOG.write(f"{time.time():.3f} 400 PriorRequestNotComplete {action}\n")
                return self.send(
                    400,
                    [("Content-Type", "text/xml")],
                    error_xml("PriorRequestNotComplete", "The request was rejected because Route 53 was still processing a prior request."),
                )
        else:
            status, headers, payload = self.forward(data)
        if is_change and status == 200:
            change_id = f"C{next(ids):012X}"
            with lock:
                changes[change_id] = time.monotonic()
            text = payload.decode()
            text = re.sub(r"<Id>[^<]*</Id>", f"<Id>/change/{change_id}</Id>", text, count=1)
            text = re.sub(r"<Status>[^<]*</Status>", "<Status>PENDING</Status>", text, count=1)
            payload = text.encode()
            LOG.write(f"{time.time():.3f} 200 ChangeResourceRecordSets {change_id}\n")
        elif path.endswith("/rrset") and self.command == "GET":
            payload = re.sub(rb"<Name>\*\.", rb"<Name>\\052.", payload)
            LOG.write(f"{time.time():.3f} {status} ListResourceRecordSets\n")
        else:
            LOG.write(f"{time.time():.3f} {status} {action}\n")
        return self.send(status, headers, payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


serve(PORT, Route53Handler)
