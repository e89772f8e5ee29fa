"""Concurrent, defensive image downloading.

Built on `requests` rather than urllib: it keeps a pool of keep-alive connections per host (a large
part of the speed-up when every request pays a round trip), has separate connect and read
timeouts, and streams the body so the byte cap is enforced before a huge file is in memory.

Every URL and every redirect hop passes `check_url` (http/https only; the host must resolve to
public addresses only, unless private hosts are allowed). The connection then goes to the very
addresses that were checked (`_pinned_adapter`): resolving the name a second time would let a
DNS server answer "public" to the check and "169.254.169.254" to the connection (DNS rebinding).
The Host header, TLS SNI and certificate checks still use the name from the URL.

Bodies stream into a `.part` file next to their final place; Pillow then decides what the bytes
are (Content-Type is never trusted). The caller renames the temp file to `<sha256>.<ext>` or
deletes it: see `Fetched.temp_path`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
import socket
import threading
import time
import uuid
import warnings
import weakref
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from officescore.images import MAX_PIXELS, to_rgb
from officescore.scrape.providers.base import local_error, retry_after_seconds

K = TypeVar("K")

PART_SUFFIX = ".part"
FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
# Image hosts (upload.wikimedia.org among them) ask for an agent that says who is fetching.
USER_AGENT = "officescore/0.1 (dataset builder; +https://github.com/officescore/officescore)"
REDIRECT_CODES = (301, 302, 303, 307, 308)
MAX_RETRY_AFTER = 30.0  # seconds: the longest Retry-After a download waits before its next try


@dataclass(frozen=True)
class DownloadConfig:
    workers: int = 16
    per_host: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # A body still arriving after total_timeout seconds is cut off when it came slower than min_rate
    # bytes/s on average (a server dripping bytes); a large photo on a slow link goes on.
    total_timeout: float = 60.0
    min_rate: float = 32 * 1024
    retries: int = 2  # extra attempts after timeouts, dropped connections, 5xx and 429
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_bytes: int = 20 * 1024 * 1024
    min_width: int = 256
    min_height: int = 256
    max_pixels: int = MAX_PIXELS
    max_redirects: int = 5
    allow_private_hosts: bool = False
    user_agent: str = USER_AGENT


def total_timeout_for(read_timeout: float) -> float:
    """The total timeout that goes with a read timeout (`--timeout`): four reads' worth, never under
    the default 60 s. A slow link's user raises --timeout, and a large photo gets longer too."""
    return max(DownloadConfig.total_timeout, 4 * read_timeout)


@dataclass
class Fetched:
    """The outcome for one URL. status "fetched" means a verified image waits at temp_path."""

    url: str
    status: str
    error: str | None = None
    temp_path: Path | None = None
    sha256: str | None = None
    phash: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    ext: str | None = None
    attempts: int = 0
    final_url: str | None = None

    def discard(self) -> None:
        if self.temp_path is not None:
            self.temp_path.unlink(missing_ok=True)
            self.temp_path = None


class _Rejected(Exception):
    """Final answer for this URL: no retry."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status


class _Retry(Exception):
    """Worth another attempt (timeout, dropped connection, 5xx, 429), after `wait` s at least."""

    def __init__(self, status: str, error: str, wait: float = 0.0) -> None:
        super().__init__(error)
        self.status = status
        self.wait = wait


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private_hosts: bool = False) -> list[str]:
    """Refuse non-http(s) URLs and hosts that resolve to private, loopback or link-local addresses.

    Returns the checked addresses (the connection must use these, not a fresh lookup); an empty
    list when private hosts are allowed (nothing was resolved, nothing is pinned).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise _Rejected("refused", f"only http and https URLs are fetched, not {parts.scheme or 'none'}:")
    host = parts.hostname
    if not host:
        raise _Rejected("refused", "URL has no host")
    if allow_private_hosts:
        return []
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise _Rejected("http_error", f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        if not _is_public(address):
            raise _Rejected(
                "refused",
                f"{host} resolves to {address}, a private/loopback/link-local address "
                "(use --allow-private-hosts to fetch from your own network)",
            )
    if not addresses:
        raise _Rejected("http_error", f"cannot resolve {host}: no addresses")
    return addresses


def _host_key(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class _Pins(threading.local):
    """Per thread: host name -> the addresses `check_url` approved for the request being made.

    requests runs a request (and opens its connection) in the calling thread, so the pin set just
    before `session.get` is the one the new connection sees.
    """

    def __init__(self) -> None:
        self.addresses: dict[str, list[str]] = {}

    def set(self, host: str, addresses: list[str]) -> None:
        if addresses:
            self.addresses[_host_key(host)] = addresses
        else:
            self.addresses.pop(_host_key(host), None)

    def get(self, host: str) -> list[str] | None:
        return self.addresses.get(_host_key(host))


def _pinned_adapter(pins: _Pins, pool_maxsize: int, opened: Callable[[socket.socket], None]) -> Any:
    """A requests adapter whose new connections go to the pinned addresses of their host.

    Only the socket's destination changes (urllib3's `_dns_host` during `_new_conn`); `host`,
    the Host header, SNI and certificate verification keep the URL's name. Hosts without a pin
    (private hosts allowed, or a proxy) resolve as usual. Every new socket is handed to `opened`.
    """
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    class Pinned:
        _dns_host: str

        def _new_conn(self) -> Any:
            sock = self._connect()
            opened(sock)
            return sock

        def _connect(self) -> Any:
            addresses = pins.get(self._dns_host)
            if not addresses:
                return super()._new_conn()  # type: ignore[misc]
            name, failure = self._dns_host, None
            for address in addresses:  # like create_connection: the first that answers
                self._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failure = exc
                finally:
                    self._dns_host = name
            assert failure is not None
            raise failure

    class PinnedHTTPConnection(Pinned, HTTPConnection):
        pass

    class PinnedHTTPSConnection(Pinned, HTTPSConnection):
        pass

    class PinnedHTTPPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}

    return PinnedAdapter(pool_connections=16, pool_maxsize=pool_maxsize, max_retries=0)


def verify_image(path: Path, config: DownloadConfig) -> tuple[str, int, int, str]:
    """Decode with Pillow: (extension, width, height, phash hex), or raise _Rejected."""
    import imagehash
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > config.max_pixels:
                    raise _Rejected(
                        "too_large", f"{width}x{height} pixels is over the {config.max_pixels:,} limit"
                    )
                fmt = image.format or ""
                if fmt not in FORMAT_EXTENSIONS:
                    raise _Rejected("not_image", f"unsupported image format {fmt or 'unknown'}")
                image.load()  # decodes everything: truncated files fail here
                if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                if width < config.min_width or height < config.min_height:
                    raise _Rejected(
                        "too_small",
                        f"{width}x{height} is under the {config.min_width}x{config.min_height} minimum",
                    )
                rgb = to_rgb(ImageOps.exif_transpose(image))
                return FORMAT_EXTENSIONS[fmt], width, height, str(imagehash.phash(rgb))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _Rejected("too_large", "too many pixels (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise _Rejected("not_image", "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _Rejected("not_image", f"truncated or corrupt image ({exc})") from None


class Downloader:
    """Fetches URLs concurrently with a per-host limit; thread-safe."""

    def __init__(self, config: DownloadConfig, temp_dir: Path, scrub: Callable[[str], str] = str) -> None:
        self.config = config
        self.temp_dir = Path(temp_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._scrub = scrub
        self._local = threading.local()
        self._host_locks: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(max(1, config.per_host))
        )
        self._guard = threading.Lock()
        self._pins = _Pins()
        # Set when `map`'s consumer stops (Ctrl-C): downloads under way end now, not after their
        # timeouts and retries (minutes, on a slow host), and no retry starts.
        self._stopped = threading.Event()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    # ---- one URL ----------------------------------------------------------------------------
    def _session(self) -> Any:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = _pinned_adapter(self._pins, max(4, self.config.per_host), self._opened)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.config.user_agent
            self._local.session = session
        return session

    def _opened(self, sock: socket.socket) -> None:
        with self._guard:  # a set that grows while `_stop` lists it raises RuntimeError there
            self._sockets.add(sock)
        if self._stopped.is_set():  # opened as the run stopped: stop it too
            self._stop()

    def _stop(self) -> None:
        """End every download under way: a blocked read returns at once, as if the host hung up."""
        self._stopped.set()
        with self._guard:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _host_lock(self, url: str) -> threading.BoundedSemaphore:
        with self._guard:
            return self._host_locks[urlsplit(url).netloc.lower()]

    def fetch(self, url: str) -> Fetched:
        """Download and verify one image (retrying what is worth retrying)."""
        result = Fetched(url=url, status="http_error")
        for attempt in range(self.config.retries + 1):
            if self._stopped.is_set():
                break
            result.attempts = attempt + 1
            try:
                return self._fetch_once(url, result)
            except _Rejected as exc:
                result.status, result.error = exc.status, self._scrub(str(exc))
                return result
            except _Retry as exc:
                result.status, result.error = exc.status, self._scrub(str(exc))
                if attempt < self.config.retries:
                    self._stopped.wait(max(self.config.backoff * (2**attempt), exc.wait))
        return result

    def _fetch_once(self, url: str, result: Fetched) -> Fetched:
        temp = self.temp_dir / f".{uuid.uuid4().hex}{PART_SUFFIX}"
        try:
            size, sha, final_url = self._download(url, temp)
            ext, width, height, phash = verify_image(temp, self.config)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        result.status, result.error = "fetched", None
        result.temp_path, result.sha256, result.phash = temp, sha, phash
        result.width, result.height, result.bytes, result.ext = width, height, size, ext
        result.final_url = final_url
        return result

    def _download(self, url: str, temp: Path) -> tuple[int, str, str]:
        """Follow redirects (checking every hop) and stream the body to `temp`."""
        import requests

        current = url
        for _hop in range(self.config.max_redirects + 1):
            addresses = check_url(current, self.config.allow_private_hosts)
            self._pins.set(urlsplit(current).hostname or "", addresses)
            with self._host_lock(current):
                try:
                    response = self._session().get(
                        current,
                        stream=True,
                        allow_redirects=False,
                        timeout=(self.config.connect_timeout, self.config.read_timeout),
                    )
                except requests.Timeout as exc:
                    raise _Retry("timeout", f"timed out: {type(exc).__name__}") from None
                except requests.exceptions.SSLError as exc:
                    # A bad certificate does not get better by asking again.
                    verify = "CERTIFICATE_VERIFY_FAILED" in str(exc)
                    reason = "certificate verify failed" if verify else "TLS handshake failed"
                    raise _Rejected("http_error", f"{reason} for {urlsplit(current).hostname}") from None
                except requests.RequestException as exc:
                    cause = local_error(exc)
                    if cause is not None:  # our request, not the host: no later try can help
                        raise _Rejected("refused", f"not sent ({type(exc).__name__}): {cause}") from None
                    raise _Retry("unavailable", f"connection failed: {type(exc).__name__}") from None
                with response:
                    if response.status_code in REDIRECT_CODES and response.headers.get("Location"):
                        current = urljoin(current, response.headers["Location"])
                        continue
                    if response.status_code >= 500:
                        raise _Retry("unavailable", f"HTTP {response.status_code}")
                    if response.status_code == 429:
                        # Too many requests: the photo is fine (image CDNs answer bursts so).
                        wait = retry_after_seconds(response.headers.get("Retry-After"), 0.0)
                        raise _Retry("unavailable", "HTTP 429", min(wait, MAX_RETRY_AFTER))
                    if response.status_code != 200:
                        raise _Rejected("http_error", f"HTTP {response.status_code}")
                    size, sha = self._stream(response, temp)
                    return size, sha, current
        raise _Rejected("http_error", f"more than {self.config.max_redirects} redirects")

    def _check_rate(self, size: int, seconds: float) -> None:
        """Cut off a body past the total timeout that arrives slower than the least rate."""
        total, least = self.config.total_timeout, self.config.min_rate
        if seconds > total and size < least * seconds:
            rate = size / seconds
            raise _Retry("timeout", f"body took over {total:g}s at {rate:,.0f} bytes/s (under {least:,.0f})")

    def _stream(self, response: Any, temp: Path) -> tuple[int, str]:
        import requests
        import urllib3

        cap = self.config.max_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise _Rejected("too_large", f"{int(declared):,} bytes declared; the cap is {cap:,}")
        digest = hashlib.sha256()
        size = 0
        started = time.monotonic()
        try:
            with open(temp, "wb") as handle:
                for chunk in _arriving(response, 64 * 1024):
                    size += len(chunk)
                    if size > cap:
                        raise _Rejected("too_large", f"over the {cap:,}-byte cap")
                    self._check_rate(size, time.monotonic() - started)
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            status = "timeout" if "timed out" in str(exc).lower() else "unavailable"
            raise _Retry(status, f"download interrupted: {type(exc).__name__}") from None
        if size == 0:
            raise _Rejected("not_image", "empty body")
        return size, digest.hexdigest()

    # ---- many URLs --------------------------------------------------------------------------
    def map(self, items: Iterable[tuple[K, str]]) -> Iterator[tuple[K, Fetched]]:
        """Fetch (key, url) pairs concurrently; yields (key, Fetched) in a fixed order.

        Hosts are interleaved so one host does not tie up every worker. Results come back in
        submission order (so "which copy is the original" does not depend on timing) while up
        to 4 x workers downloads run ahead; queued work stays bounded for long lists.
        """
        ordered = _interleave_hosts(list(items))
        self._stopped.clear()
        workers = max(1, self.config.workers)
        window: deque[tuple[K, Future[Fetched]]] = deque()
        with (
            _ctrl_c_flag() as interrupted,
            ThreadPoolExecutor(workers, thread_name_prefix="download") as pool,
        ):
            position = 0
            try:
                while position < len(ordered) or window:
                    while position < len(ordered) and len(window) < 4 * workers:
                        key, url = ordered[position]
                        window.append((key, pool.submit(self.fetch, url)))
                        position += 1
                    key, future = window.popleft()
                    yield key, _result(future, interrupted)
            finally:
                # Interrupted (or the consumer stopped): end the downloads under way, drop queued
                # work, clean finished temp files.
                self._stop()
                for _, future in window:
                    future.cancel()
                for _, future in window:
                    if not future.cancelled():
                        with contextlib.suppress(Exception):  # best-effort cleanup
                            future.result().discard()


def _arriving(response: Any, size: int) -> Iterator[bytes]:
    """The body as it arrives, at most `size` bytes a piece. iter_content waits until a whole piece
    is in, so a server dripping a byte at a time (each within the read timeout) would hold it for
    days, past the total deadline; read1 returns what one read got."""
    raw = response.raw
    if not hasattr(raw, "read1"):  # urllib3 < 2.1: whole pieces only
        yield from response.iter_content(size)
        return
    while chunk := raw.read1(size, decode_content=True):
        yield chunk


@contextlib.contextmanager
def _ctrl_c_flag() -> Iterator[threading.Event]:
    """An event Ctrl-C sets before it raises KeyboardInterrupt. Python drops the raise when it lands
    while the main thread runs a weakref callback or a `__del__` (a closed socket's, say), and the
    downloads then went on to their timeouts; the flag outlives it. Off the main thread: never set."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_ctrl_c(number: int, frame: Any) -> None:
        interrupted.set()
        if callable(previous):
            previous(number, frame)

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _result(future: Future[Fetched], interrupted: threading.Event) -> Fetched:
    """The future's result, or KeyboardInterrupt within a fifth of a second of a Ctrl-C."""
    while not wait([future], timeout=0.2).done:
        if interrupted.is_set():
            raise KeyboardInterrupt
    if interrupted.is_set():
        raise KeyboardInterrupt
    return future.result()


def _interleave_hosts(items: list[tuple[K, str]]) -> list[tuple[K, str]]:
    by_host: OrderedDict[str, list[tuple[K, str]]] = OrderedDict()
    for key, url in items:
        by_host.setdefault(urlsplit(url).netloc.lower(), []).append((key, url))
    queues = [list(reversed(group)) for group in by_host.values()]
    ordered: list[tuple[K, str]] = []
    while queues:
        for queue in list(queues):
            ordered.append(queue.pop())
            if not queue:
                queues.remove(queue)
    return ordered


def clean_partial_files(folder: Path) -> int:
    """Remove `.part` files a killed run left behind; returns how many."""
    removed = 0
    if Path(folder).is_dir():
        for path in Path(folder).glob(f".*{PART_SUFFIX}"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed
