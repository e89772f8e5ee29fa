"""Real HTTP servers on 127.0.0.1 that imitate Google Custom Search, Openverse and image hosts.

Each runs in a thread (ThreadingHTTPServer) and records every request it answers, so tests can
check what was actually sent (parameters, how often a page was fetched, retries).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image, ImageDraw

# ---- images -------------------------------------------------------------------------------------


def scene(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A structured picture (gradient background, random boxes and ellipses), distinct per seed."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size)
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=colour)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x1, y1], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def near_copy(image: Image.Image) -> bytes:
    """Resized to 90 %, re-encoded at lower quality: a near-duplicate, different bytes."""
    smaller = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.Resampling.LANCZOS)
    return encode(smaller, "JPEG", quality=70)


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header claims billions of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


# ---- server plumbing ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Send the body in pieces with a pause between them (slow servers, killed mid-download).
    chunks: int = 1
    pause: float = 0.0
    delay: float = 0.0  # before the status line
    close_delimited: bool = False  # no Content-Length: the body ends when the connection closes


class FakeServer:
    """Base: subclasses implement `route(method, path, query, body, headers) -> Reply`."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = []
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append((method, parts.path, query, headers))
                    outer.counts[parts.path] += 1
                reply = outer.route(method, parts.path, query, body, headers)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.close_delimited:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                elif "Content-Length" not in reply.headers:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                step = max(1, -(-len(reply.body) // reply.chunks))
                for offset in range(0, len(reply.body), step):
                    if offset and reply.pause:
                        time.sleep(reply.pause)
                    self.wfile.write(reply.body[offset : offset + step])
                    self.wfile.flush()

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        self.server = _Server(address, Handler)
        self.scheme = "http"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def use_tls(self, certfile: str, keyfile: str) -> FakeServer:
        """Serve HTTPS with this certificate (call before start)."""
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https"
        return self

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        raise NotImplementedError


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


# ---- Google Custom Search -----------------------------------------------------------------------


def google_error(code: int, message: str, status: str, reason: str, detail: str | None = None) -> dict:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
        "status": status,
    }
    if detail:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": detail,
                "domain": "googleapis.com",
            }
        ]
    return {"error": error}


QUOTA_429 = google_error(
    429,
    "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service "
    "'customsearch.googleapis.com' for consumer 'project_number:123456789'.",
    "RESOURCE_EXHAUSTED",
    "rateLimitExceeded",
    "RATE_LIMIT_EXCEEDED",
)
INVALID_400 = google_error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT", "badRequest")
BAD_KEY_400 = google_error(
    400,
    "API key not valid. Please pass a valid API key.",
    "INVALID_ARGUMENT",
    "badRequest",
    "API_KEY_INVALID",
)


class FakeCustomSearch(FakeServer):
    """GET /customsearch/v1: the Custom Search JSON API for searchType=image.

    `total` results exist per query; `link(query, index)` makes each result's image URL.
    After `quota` successful answers it replies 429 RESOURCE_EXHAUSTED until `reset_quota()`.
    `fail` holds statuses to answer (one each) before answering normally (e.g. [503]).
    Paging can be made to misbehave: `next_page` "honest" (the real API: while more results exist,
    up to start 91), "always" (claims a next page, even past the cap) or "never"; `short_pages`
    maps a page's start to how many items it returns (fewer than asked, whatever `total` says);
    `no_items` holds starts whose answer has no `items` key at all (as the API answers past the end).
    """

    def __init__(self, key: str, cx: str, link: Callable[[str, int], str], total: int = 30) -> None:
        super().__init__()
        self.key, self.cx, self.link, self.total = key, cx, link, total
        self.quota: int | None = None
        self.served = 0
        self.fail: list[int] = []
        self.ok_pages: Counter[tuple[str, int]] = Counter()
        self.echo_key = False  # a careless API: echoes the key into titles, links and errors
        self.outage_after: int | None = None  # after this many good answers: 503 from then on
        self.next_page = "honest"
        self.short_pages: dict[int, int] = {}
        self.no_items: set[int] = set()
        self.closed: int | None = None  # 403 or 410: answer every search with Google's closure

    def closure(self, status: int) -> Reply:
        """What the API answers once it is turned off: 410 Gone, or 403 PERMISSION_DENIED for a
        project it no longer serves (google_error's shape, the message naming the closure)."""
        message = (
            "Custom Search JSON API is no longer available. It was discontinued on January 1, 2027; "
            "see https://developers.google.com/custom-search/v1/overview"
        )
        kind = "GONE" if status == 410 else "PERMISSION_DENIED"
        return _json(status, google_error(status, message, kind, "gone" if status == 410 else "forbidden"))

    def reset_quota(self, quota: int | None = None) -> None:
        with self.lock:
            self.served, self.quota = 0, quota

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if path != "/customsearch/v1":
            return _json(404, google_error(404, "Not Found", "NOT_FOUND", "notFound"))
        get = {k: v[0] for k, v in query.items()}
        if self.closed:
            return self.closure(self.closed)
        if get.get("key") != self.key:
            bad = json.loads(json.dumps(BAD_KEY_400))
            if self.echo_key:
                bad["error"]["message"] += f" (key {get.get('key')})"
            return _json(400, bad)
        with self.lock:
            outage = self.outage_after is not None and self.served >= self.outage_after
            if self.fail or outage:
                status = self.fail.pop(0) if self.fail else 503
                message = f"Backend Error (request key={get.get('key')})"  # a careless server echoes the key
                return _json(status, google_error(status, message, "UNAVAILABLE", "backendError"))
            if self.quota is not None and self.served >= self.quota:
                return _json(429, QUOTA_429)
        start, num = int(get.get("start", 1)), int(get.get("num", 10))
        if get.get("cx") != self.cx or not 1 <= num <= 10 or start < 1 or start + num > 100:
            return _json(400, INVALID_400)
        q = get.get("q", "")
        indices = range(start - 1, min(self.total, start - 1 + min(num, self.short_pages.get(start, num))))
        items = [] if start in self.no_items else [self._item(q, i) for i in indices]
        request = {
            "totalResults": str(self.total),
            "searchTerms": q,
            "count": len(items),
            "startIndex": start,
        }
        request.update({k: get[k] for k in ("cx", "safe", "searchType", "rights", "imgType") if k in get})
        queries: dict[str, Any] = {"request": [request]}
        honest = start - 1 + num < self.total and start + num <= 91
        if self.next_page == "always" or (self.next_page == "honest" and honest):
            queries["nextPage"] = [{**request, "startIndex": start + num}]
        answer = {
            "kind": "customsearch#search",
            "url": {
                "type": "application/json",
                "template": "https://www.googleapis.com/customsearch/v1?q={searchTerms}",
            },
            "queries": queries,
            "context": {"title": "fake engine"},
            "searchInformation": {"searchTime": 0.1, "totalResults": str(self.total)},
            "items": items,
        }
        if start in self.no_items:
            del answer["items"]
        with self.lock:
            self.served += 1
            self.ok_pages[(q, start)] += 1
        return _json(200, answer)

    def _item(self, query: str, index: int) -> dict[str, Any]:
        link = self.link(query, index)
        title = f"{query} #{index}"
        if self.echo_key:
            link += f"&key={self.key}"
            title += f" key={self.key}"
        return {
            "kind": "customsearch#result",
            "title": title,
            "htmlTitle": f"<b>{query}</b> #{index}",
            "link": link,
            "displayLink": "images.example",
            "snippet": query,
            "mime": "image/jpeg",
            "fileFormat": "image/jpeg",
            "image": {
                "contextLink": f"https://images.example/page/{index}",
                "height": 240,
                "width": 320,
                "byteSize": 12345,
                "thumbnailLink": "https://encrypted-tbn0.gstatic.com/images?q=tbn",
                "thumbnailHeight": 90,
                "thumbnailWidth": 120,
            },
        }


# ---- Openverse ----------------------------------------------------------------------------------


class FakeOpenverse(FakeServer):
    """GET /v1/images/ (paged, page_size <= 20 anonymous) and POST /v1/auth_tokens/token/."""

    def __init__(self, link: Callable[[str, int], str], total: int = 45) -> None:
        super().__init__()
        self.link, self.total = link, total
        self.client_id: str | None = None
        self.client_secret: str | None = None
        self.token = "ov-token-7b1e9f"
        self.throttle: list[int] = []  # Retry-After values to answer 429 with, one per request

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if method == "POST" and path == "/v1/auth_tokens/token/":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
                return _json(401, {"detail": "Invalid client credentials."})
            return _json(200, {"access_token": self.token, "token_type": "Bearer", "expires_in": 36000})
        if path != "/v1/images/":
            return _json(404, {"detail": "Not found."})
        if self.client_id and headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"detail": "Authentication credentials were not provided."})
        with self.lock:
            if self.throttle:
                return _json(
                    429, {"detail": "Request was throttled."}, {"Retry-After": str(self.throttle.pop(0))}
                )
        get = {k: v[0] for k, v in query.items()}
        page, size = int(get.get("page", 1)), int(get.get("page_size", 20))
        if size > 20 and not self.client_id:
            return _json(401, {"detail": "page_size above 20 needs authentication"})
        q = get.get("q", "")
        page_count = -(-self.total // size)
        if page > page_count:
            return _json(400, {"detail": "Invalid page."})
        results = [self._item(q, i) for i in range((page - 1) * size, min(self.total, page * size))]
        return _json(
            200,
            {
                "result_count": self.total,
                "page_count": page_count,
                "page_size": size,
                "page": page,
                "results": results,
            },
        )

    def _item(self, query: str, index: int) -> dict[str, Any]:
        return {
            "id": f"id-{index}",
            "title": f"{query} [{index}]",
            "foreign_landing_url": f"https://www.flickr.com/photos/someone/{index}",
            "url": self.link(query, index),
            "creator": f"Creator_{index}",
            "creator_url": f"https://www.flickr.com/photos/creator{index}",
            "license": "by-sa",
            "license_version": "2.0",
            "license_url": "https://creativecommons.org/licenses/by-sa/2.0/",
            "provider": "flickr",
            "source": "flickr",
            "attribution": f'"{query} [{index}]" by Creator_{index} is licensed under CC BY-SA 2.0.',
            "width": 320,
            "height": 240,
            "filetype": "jpg",
            "mature": False,
        }


# ---- image host ---------------------------------------------------------------------------------


class ImageHost(FakeServer):
    """Serves images good and bad.

    /good/N, /dup/N (same bytes as good N), /near/N (resized + re-encoded good N), /redirect/N
    (302 to /good/N), /png/N, /broken (truncated JPEG), /html (HTML sent as image/jpeg), /small,
    /huge (declares a large Content-Length), /endless (large body, no declared length), /bomb
    (PNG header claiming 3.6 gigapixels), /slow (answers after `slow_delay`), /flaky/N (503 for the
    first `flaky_failures` requests, then good N), /missing (404), /loop (redirects to itself),
    /to-private/N (redirect to [::1]), /drip/N (good N sent in pieces with pauses).
    Any query string is ignored, so result URLs can be unique per search result.
    """

    def __init__(self, n_images: int = 12, slow_delay: float = 1.0, drip_pause: float = 0.2) -> None:
        super().__init__()
        self.images = [scene(seed) for seed in range(n_images)]
        self.jpegs = [encode(image, "JPEG", quality=90) for image in self.images]
        self.slow_delay, self.drip_pause = slow_delay, drip_pause
        self.flaky_failures = 2
        self.flaky_seen: Counter[str] = Counter()

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        parts = path.strip("/").split("/")
        kind = parts[0]
        n = int(parts[1]) % len(self.jpegs) if len(parts) > 1 and parts[1].isdigit() else 0
        jpeg = {"Content-Type": "image/jpeg"}
        if kind in ("good", "dup"):
            return Reply(200, self.jpegs[n], jpeg)
        if kind == "near":
            return Reply(200, near_copy(self.images[n]), jpeg)
        if kind == "png":
            return Reply(200, encode(self.images[n], "PNG"), {"Content-Type": "application/octet-stream"})
        if kind == "redirect":
            return Reply(302, b"", {"Location": f"/good/{n}"})
        if kind == "to-private":
            port = self.server.server_address[1]
            return Reply(302, b"", {"Location": f"http://[::1]:{port}/good/{n}"})
        if kind == "loop":
            return Reply(302, b"", {"Location": "/loop"})
        if kind == "broken":
            return Reply(200, self.jpegs[0][: len(self.jpegs[0]) // 2], jpeg)
        if kind == "html":
            return Reply(200, b"<!doctype html><html><body>Not an image</body></html>", jpeg)
        if kind == "small":
            return Reply(200, encode(self.images[0].resize((40, 30)), "JPEG"), jpeg)
        if kind == "huge":
            return Reply(200, b"\xff\xd8" + b"\0" * 1000, {**jpeg, "Content-Length": str(500 * 1024 * 1024)})
        if kind == "endless":
            return Reply(200, b"\xff\xd8" + b"\0" * (3 * 1024 * 1024), jpeg, chunks=8, close_delimited=True)
        if kind == "bomb":
            return Reply(200, png_bomb(), {"Content-Type": "image/png"})
        if kind == "slow":
            return Reply(200, self.jpegs[n], jpeg, delay=self.slow_delay)
        if kind == "drip":
            return Reply(200, self.jpegs[n], jpeg, chunks=4, pause=self.drip_pause)
        if kind == "flaky":
            with self.lock:
                self.flaky_seen[path] += 1
                failing = self.flaky_seen[path] <= self.flaky_failures
            return (
                Reply(503, b"busy", {"Content-Type": "text/plain"})
                if failing
                else Reply(200, self.jpegs[n], jpeg)
            )
        return Reply(404, b"not found", {"Content-Type": "text/plain"})


class LatencyHost(FakeServer):
    """Every request waits `latency` seconds, then gets one of a few JPEGs (the benchmark's host)."""

    def __init__(self, latency: float = 0.1, n_images: int = 8, size: tuple[int, int] = (320, 240)) -> None:
        super().__init__()
        self.latency = latency
        self.jpegs = [encode(scene(seed, size), "JPEG", quality=85) for seed in range(n_images)]
        self.server.request_queue_size = 128

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        n = int(path.rsplit("/", 1)[-1]) if path.rsplit("/", 1)[-1].isdigit() else 0
        return Reply(200, self.jpegs[n % len(self.jpegs)], {"Content-Type": "image/jpeg"}, delay=self.latency)


def self_signed_certificate(hostname: str, folder: Any) -> tuple[str, str]:
    """(certfile, keyfile) of a self-signed certificate for `hostname` (also its own CA)."""
    import datetime
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = Path(folder) / "cert.pem", Path(folder) / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(certfile), str(keyfile)
