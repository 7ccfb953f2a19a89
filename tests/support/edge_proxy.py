"""A front for moto that makes its CloudFront and IAM server certificates
behave like the real ones, for the rollout tests.

Usage: edge_proxy.py PORT UPSTREAM_URL LOG_FILE [DEPLOY_SECONDS [CONFLICT_FILE]]

Every request is passed to UPSTREAM (moto, or the Route53 front before it)
unchanged, so the real SDK path and moto's validation stay, except:

- IAM server certificates: moto hands every certificate the same
  ServerCertificateId (ASCACKCEVSQ6C2EXAMPLE) and upload date (2010);
  real IAM gives each its own id (CloudFront references IAM certificates
  by it) and the time of the upload. Each metadata block gets an id
  derived from its ARN, and the upload time this front saw.
- CloudFront ETags: moto keeps one ETag per distribution that never
  changes and accepts any If-Match. Here every distribution has a version;
  GetDistribution/GetDistributionConfig answer its ETag, and an
  UpdateDistribution whose If-Match is not the current ETag gets 412
  PreconditionFailed, as CloudFront answers when someone else changed the
  distribution since it was read.
- CONFLICT_FILE (distribution ids, one per line, read at each update):
  the first update of each is preceded by someone else's edit (its Comment becomes
  "edited by someone else"), so that update is refused with 412 and must
  be re-read and retried without losing that edit.
- Deployment: after an update, GetDistribution says InProgress for
  DEPLOY_SECONDS (default 2), then Deployed.
- ListDistributions: each summary carries its ViewerCertificate, as the
  real one does (moto leaves it out).

LOG_FILE gets one line per CloudFront request: `<unix time> <status>
<method> <path>`. Binds 127.0.0.1 only.
"""
import hashlib
import re
import sys
import threading
import time
import urllib.parse

from http_front import Handler, Upstream, serve

PORT = int(sys.argv[1])
UPSTREAM = Upstream(sys.argv[2])
LOG = open(sys.argv[3], "a", buffering=1)
DEPLOY = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
CONFLICT_FILE = sys.argv[5] if len(sys.argv) > 5 else None
conflicted = set()  # ids whose conflicting edit was made

lock = threading.Lock()
versions = {}  # distribution id -> version
deploying = {}  # distribution id -> monotonic time the last update deploys
uploaded = {}  # IAM ARN -> upload time (ISO 8601)

CF = re.compile(r"^/20\d\d-\d\d-\d\d/distribution(?:/([^/?]+))?(/config)?/?$")
CF_NS = "http://cloudfront.amazonaws.com/doc/2020-05-31/"


def call(method, path, data=b"", headers=None):
    return UPSTREAM.call(method, path, data, headers)


def etag(dist_id):
    with lock:
        return f"E{versions.setdefault(dist_id, 1):03d}{dist_id}"


def cf_error(status, code, message):
    body = (
        f'<?xml version="1.0"?>\n<ErrorResponse xmlns="{CF_NS}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{time.time_ns():x}</RequestId></ErrorResponse>"
    ).encode()
    return status, [("Content-Type", "text/xml")], body


def iam_id(arn):
    return "ASCA" + hashlib.sha1(arn.encode()).hexdigest()[:17].upper()


def fix_iam(action, payload):
    """Per-certificate ids and upload dates in every metadata block."""
    text = payload.decode()

    def block(m):
        b = m.group(0)
        arn = re.search(r"<Arn>([^<]*)</Arn>", b)
        if not arn:
            return b
        arn = arn.group(1)
        with lock:
            if action == "UploadServerCertificate" and arn not in uploaded:
                uploaded[arn] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()).replace(
                    "Z", f".{time.time_ns() % 10**9 // 10**6:03d}Z"
                )
            date = uploaded.get(arn)
        b = re.sub(r"<ServerCertificateId>[^<]*</ServerCertificateId>",
                   f"<ServerCertificateId>{iam_id(arn)}</ServerCertificateId>", b)
        if date:
            b = re.sub(r"<UploadDate>[^<]*</UploadDate>", f"<UploadDate>{date}</UploadDate>", b)
        return b

    text = re.sub(r"<(ServerCertificateMetadata|member)>.*?</\1>", block, text, flags=re.S)
    return text.encode()


def foreign_edit(dist_id, path, headers):
    """Someone else changes the distribution's comment."""
    status, _, body = call("GET", path, headers=headers)
    if status != 200:
        return
    edited = re.sub(rb"<Comment>[^<]*</Comment>", b"<Comment>edited by someone else</Comment>", body, count=1)
    edited = re.sub(rb"<DistributionConfig[^>]*>", f'<DistributionConfig xmlns="{CF_NS}">'.encode(), edited, count=1)
    h = dict(headers)
    h["If-Match"] = etag(dist_id)
    h["Content-Type"] = "application/xml"
    call("PUT", path, edited, h)
    with lock:
        versions[dist_id] = versions.get(dist_id, 1) + 1


def with_viewer_certificates(payload, headers):
    """Puts each distribution's ViewerCertificate into its summary."""
    text = payload.decode()

    def summary(m):
        s = m.group(0)
        if "<ViewerCertificate>" in s:
            return s
        dist_id = re.search(r"<Id>([^<]*)</Id>", s).group(1)
        status, _, body = call("GET", f"/2020-05-31/distribution/{dist_id}/config", headers=headers)
        vc = re.search(r"<ViewerCertificate>.*?</ViewerCertificate>", body.decode(), flags=re.S)
        if status != 200 or not vc:
            return s
        return s.replace("</DistributionSummary>", vc.group(0) + "</DistributionSummary>")

    return re.sub(r"<DistributionSummary>.*?</DistributionSummary>", summary, text, flags=re.S).encode()


class EdgeHandler(Handler):
    def handle_any(self):
        data = self.body()
        path = urllib.parse.urlparse(self.path).path
        headers = self.passed_headers()
        cf = CF.match(path)
        scope = self.headers.get("Authorization", "")
        if cf:
            status, out_headers, payload = self.cloudfront(cf, path, data, headers)
            LOG.write(f"{time.time():.3f} {status} {self.command} {path}\n")
            return self.send(status, out_headers, payload)
        status, out_headers, payload = call(self.command, self.path, data, headers)
        if "/iam/aws4_request" in scope and status == 200:
            action = urllib.parse.parse_qs(data.decode(errors="replace")).get("Action", [""])[0]
            if "ServerCertificate" in action:
                payload = fix_iam(action, payload)
        return self.send(status, out_headers, payload)

    def cloudfront(self, cf, path, data, headers):
        dist_id, config = cf.group(1), cf.group(2)
        if dist_id is None:
            status, out_headers, payload = call(self.command, self.path, data, headers)
            if self.command == "GET" and status == 200:
                payload = with_viewer_certificates(payload, headers)
            return status, out_headers, payload
        if self.command == "PUT" and config:
            try:
                wanted = set(open(CONFLICT_FILE).read().split()) if CONFLICT_FILE else set()
            except OSError:
                wanted = set()
            with lock:
                conflict = dist_id in wanted and dist_id not in conflicted
                conflicted.add(dist_id)
            if conflict:
                foreign_edit(dist_id, path, headers)
            if self.headers.get("If-Match") != etag(dist_id):
                return cf_error(412, "PreconditionFailed",
                                "The precondition given in one or more of the request-header fields evaluated to false.")
            status, out_headers, payload = call(self.command, self.path, data, headers)
            if status == 200:
                with lock:
                    versions[dist_id] = versions.get(dist_id, 1) + 1
                    deploying[dist_id] = time.monotonic() + DEPLOY
        else:
            status, out_headers, payload = call(self.command, self.path, data, headers)
        if status != 200:
            return status, out_headers, payload
        out_headers = [(k, v) for k, v in out_headers if k.lower() != "etag"]
        out_headers.append(("ETag", etag(dist_id)))
        with lock:
            in_progress = time.monotonic() < deploying.get(dist_id, 0)
        if in_progress:
            payload = re.sub(rb"<Status>[^<]*</Status>", b"<Status>InProgress</Status>", payload, count=1)
        elif not config:
            payload = re.sub(rb"<Status>[^<]*</Status>", b"<Status>Deployed</Status>", payload, count=1)
        return status, out_headers, payload

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


serve(PORT, EdgeHandler)
