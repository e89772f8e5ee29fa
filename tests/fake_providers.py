"""Imitations of Wikimedia Commons' MediaWiki API, Unsplash and Flickr on 127.0.0.1.

Built from the published answers (see each class). Every fake counts the pages it answered with
a result in `ok_pages` (key: query and the page's own parameters), so a test can prove that no
page was served twice, and can hold one page's request open (`hold`) until the test has killed
the client: such a request is then answered 503 and not counted (its answer never arrived).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from fakeservers import FakeServer, Reply

Link = Callable[[str, int], str]


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


class _Counting(FakeServer):
    """Shared: per-page counting, a hold on one page, queued throttle answers."""

    def __init__(self) -> None:
        super().__init__()
        self.ok_pages: Counter[tuple[Any, ...]] = Counter()
        self.hold: tuple[Any, ...] | None = None  # the page key whose request waits for `release`
        self.held = threading.Event()  # set when the held request has arrived
        self.release = threading.Event()
        self.throttle: list[Reply] = []  # answered first, one per request

    def _gate(self, key: tuple[Any, ...]) -> Reply | None:
        with self.lock:
            if self.throttle:
                return self.throttle.pop(0)
        if key == self.hold:
            self.held.set()
            self.release.wait(30)
            return Reply(503, b"client went away", {"Content-Type": "text/plain"})
        return None

    def _served(self, key: tuple[Any, ...]) -> None:
        with self.lock:
            self.ok_pages[key] += 1


# ---- Wikimedia Commons ---------------------------------------------------------------------------

# (LicenseShortName, License, LicenseUrl, AttributionRequired) as Commons' extmetadata gives them.
COMMONS_LICENSES = [
    ("CC BY-SA 4.0", "cc-by-sa-4.0", "https://creativecommons.org/licenses/by-sa/4.0", "true"),
    ("CC BY 2.0", "cc-by-2.0", "https://creativecommons.org/licenses/by/2.0", "true"),
    ("Public domain", "pd", None, "false"),
    ("CC0", "cc0", "http://creativecommons.org/publicdomain/zero/1.0/deed.en", "false"),
    ("GFDL", "gfdl", "https://www.gnu.org/copyleft/fdl.html", "true"),  # no --rights name matches
]


class FakeCommons(_Counting):
    """GET /w/api.php?action=query&generator=search&gsrnamespace=6&prop=imageinfo&formatversion=2.

    `total` files match each query; file i has licence COMMONS_LICENSES[i % 5] (so every fifth is
    GFDL-only) unless `licenses` says otherwise. Paging is MediaWiki's `continue`: `gsroffset` for
    the next search batch; for an offset in `split`, the batch's imageinfo comes in two answers
    (the first carries `iicontinue` and `continue: "gsroffset||"`, as the API does when a
    response would be too large). `maxlag` holds lags to answer with the maxlag error (HTTP 200,
    Retry-After and X-Database-Lag headers). A request without a User-Agent naming officescore
    and a contact is refused 403, as Wikimedia's User-Agent policy does.
    """

    def __init__(self, link: Link, total: int = 25) -> None:
        super().__init__()
        self.link, self.total = link, total
        self.split: set[int] = set()
        self.maxlag: list[int] = []
        self.licenses: Callable[[int], tuple[str, str, str | None, str]] = lambda i: COMMONS_LICENSES[i % 5]

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if path != "/w/api.php":
            return Reply(404, b"Not Found", {"Content-Type": "text/html"})
        agent = headers.get("user-agent", "")
        if "officescore" not in agent or "https://" not in agent:
            return Reply(
                403, b"Please set a user-agent and respect our robot policy", {"Content-Type": "text/plain"}
            )
        get = {k: v[0] for k, v in query.items()}
        required = {
            "action": "query",
            "generator": "search",
            "gsrnamespace": "6",
            "prop": "imageinfo",
            "formatversion": "2",
            "format": "json",
        }
        wrong = [k for k, v in required.items() if get.get(k) != v]
        if wrong or set(get.get("iiprop", "").split("|")) < {"url", "size", "mime", "extmetadata"}:
            return _json(200, {"error": {"code": "badvalue", "info": f"Unrecognized parameters: {wrong}"}})
        if self.maxlag:
            with self.lock:
                lag = self.maxlag.pop(0)
            error = {
                "code": "maxlag",
                "info": f"Waiting for 10.64.0.1: {lag} seconds lagged.",
                "host": "10.64.0.1",
                "lag": lag,
                "type": "db",
                "*": "See https://commons.wikimedia.org/w/api.php for API usage.",
            }
            return _json(
                200, {"error": error, "servedby": "mw1"}, {"Retry-After": "0", "X-Database-Lag": str(lag)}
            )
        q = get.get("gsrsearch", "")
        limit, offset = int(get.get("gsrlimit", 10)), int(get.get("gsroffset", 0))
        iicontinue = get.get("iicontinue")
        key = (q, offset, iicontinue)
        gated = self._gate(key)
        if gated is not None:
            return gated
        if iicontinue:  # the rest of a split batch: "File:...|<batch offset>|<first index>"
            batch, first = (int(x) for x in iicontinue.split("|")[1:3])
        else:
            batch, first = offset, offset
        indices = list(range(batch, min(self.total, batch + limit)))
        half = batch + (len(indices) + 1) // 2
        with_info = [i for i in indices if i >= first]
        answer: dict[str, Any] = {"batchcomplete": True}
        more: dict[str, Any] = {}
        if batch in self.split and not iicontinue:
            with_info = [i for i in indices if i < half]
            more = {"iicontinue": f"{self._title(q, half)}|{batch}|{half}", "gsroffset": batch + limit}
            more["continue"] = "gsroffset||"
            del answer["batchcomplete"]
        elif batch + limit < self.total:
            more = {"gsroffset": batch + limit, "continue": "gsroffset||"}
        if more:
            answer["continue"] = more
        pages = [self._page(q, i, i in with_info) for i in indices]
        answer["query"] = {"pages": sorted(pages, key=lambda p: p["pageid"])}  # id order, not rank
        self._served(key)
        return _json(200, answer)

    @staticmethod
    def _title(query: str, index: int) -> str:
        return f"File:{query.split(' filetype')[0].title()} {index}.jpg"

    def _page(self, query: str, index: int, with_info: bool) -> dict[str, Any]:
        title = self._title(query, index)
        page: dict[str, Any] = {
            "pageid": 90000 + (index * 7919) % 1000,
            "ns": 6,
            "title": title,
            "index": index + 1,
        }
        if not with_info:
            return page
        short, code, url, required = self.licenses(index)
        meta: dict[str, Any] = {
            "ObjectName": {"value": f"Desk {index}", "source": "commons-desc-page"},
            "LicenseShortName": {"value": short, "source": "commons-desc-page", "hidden": ""},
            "License": {"value": code, "source": "commons-templates", "hidden": ""},
            "AttributionRequired": {"value": required, "source": "commons-desc-page", "hidden": ""},
            "Artist": {
                "value": f'<a href="//commons.wikimedia.org/wiki/User:Maker{index}" '
                f'title="User:Maker{index}">Maker&amp;Co {index}</a>',
                "source": "commons-desc-page",
            },
        }
        if url:
            meta["LicenseUrl"] = {"value": url, "source": "commons-desc-page", "hidden": ""}
        name = title.removeprefix("File:").replace(" ", "_")
        page["imagerepository"] = "local"
        page["imageinfo"] = [
            {
                "size": 123456,
                "width": 4000,
                "height": 3000,
                "thumburl": self.link(query, index),
                "thumbwidth": 2048,
                "thumbheight": 1536,
                "url": f"https://upload.wikimedia.org/wikipedia/commons/a/ab/{name}",
                "descriptionurl": f"https://commons.wikimedia.org/wiki/{title.replace(' ', '_')}",
                "descriptionshorturl": f"https://commons.wikimedia.org/w/index.php?curid={page['pageid']}",
                "mime": "image/jpeg",
                "extmetadata": meta,
            }
        ]
        return page


# ---- Unsplash ------------------------------------------------------------------------------------


class FakeUnsplash(_Counting):
    """GET /search/photos (Authorization: Client-ID <key>) and GET /photos/<id>/download.

    Answers {"total", "total_pages", "results": [photo...]} with per_page <= 30. Every answer
    carries X-Ratelimit-Limit / X-Ratelimit-Remaining for the current hour (`limit` requests,
    download calls included); past it, 403 "Rate Limit Exceeded" as text, as Unsplash does, until
    `new_hour()`. Photos whose index is in `premium` are Unsplash+ (premium, plus: true).
    `tracked` counts download events per photo id; `event_replies` are answered to the next
    download events instead (not counted).
    """

    def __init__(self, key: str, link: Link, total: int = 70, limit: int = 50) -> None:
        super().__init__()
        self.key, self.link, self.total, self.limit = key, link, total, limit
        self.used = 0
        self.premium: set[int] = set()
        self.tracked: Counter[str] = Counter()
        self.event_replies: list[Reply] = []  # answered first, one per download event, uncounted
        self.echo_key = False  # a careless server: repeats the key in descriptions

    def new_hour(self) -> None:
        with self.lock:
            self.used = 0

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if headers.get("authorization") != f"Client-ID {self.key}":
            return _json(401, {"errors": ["OAuth error: The access token is invalid"]})
        with self.lock:
            if self.used >= self.limit:
                return Reply(403, b"Rate Limit Exceeded", {"Content-Type": "text/plain"})
            self.used += 1
            rate = {
                "X-Ratelimit-Limit": str(self.limit),
                "X-Ratelimit-Remaining": str(self.limit - self.used),
            }
        get = {k: v[0] for k, v in query.items()}
        if path.startswith("/photos/") and path.endswith("/download"):
            photo = path.split("/")[2]
            if "ixid" not in get:
                return _json(400, {"errors": ["ixid is required"]}, rate)
            with self.lock:
                if self.event_replies:
                    reply = self.event_replies.pop(0)
                    return Reply(reply.status, reply.body, {**reply.headers, **rate})
                self.tracked[photo] += 1
            return _json(200, {"url": f"https://images.unsplash.com/photo-{photo}?ixid={get['ixid']}"}, rate)
        if path != "/search/photos":
            return _json(404, {"errors": ["Couldn't find Route"]}, rate)
        q, page, per_page = get.get("query", ""), int(get.get("page", 1)), int(get.get("per_page", 10))
        if not q:
            return _json(400, {"errors": ["query is missing"]}, rate)
        per_page = min(per_page, 30)
        key = (q, page)
        gated = self._gate(key)
        if gated is not None:
            return Reply(gated.status, gated.body, {**gated.headers, **rate})
        indices = range((page - 1) * per_page, min(self.total, page * per_page))
        answer = {
            "total": self.total,
            "total_pages": -(-self.total // per_page),
            "results": [self._photo(q, i) for i in indices],
        }
        self._served(key)
        return _json(200, answer, rate)

    def _photo(self, query: str, index: int) -> dict[str, Any]:
        photo_id = f"ph{index:04d}x"
        user = f"maker{index % 7}"
        paid = index in self.premium
        return {
            "id": photo_id,
            "slug": f"desk-{photo_id}",
            "created_at": "2024-05-01T10:00:00Z",
            "width": 4000,
            "height": 3000,
            "color": "#60544D",
            "blur_hash": "LoC%a7IoIVxZ_NM|M{s:%hRjWAo0",
            "description": f"{query} {index} (client {self.key})"
            if self.echo_key
            else (None if index % 2 else f"{query} {index}"),
            "alt_description": f"a desk by a window {index}",
            "urls": {
                "raw": self.link(query, index) + "&raw=1",
                "full": self.link(query, index),
                "regular": self.link(query, index) + "&w=1080",
                "small": self.link(query, index) + "&w=400",
                "thumb": self.link(query, index) + "&w=200",
            },
            "links": {
                "self": f"https://api.unsplash.com/photos/{photo_id}",
                "html": f"https://unsplash.com/photos/{photo_id}",
                "download": f"https://unsplash.com/photos/{photo_id}/download",
                "download_location": f"{self.url}/photos/{photo_id}/download?ixid=M3wx{index}",
            },
            "premium": paid,
            "plus": paid,
            "user": {
                "id": f"u{index % 7}",
                "username": user,
                "name": f"Maker {index % 7}",
                "links": {
                    "html": f"https://unsplash.com/@{user}",
                    "self": f"https://api.unsplash.com/users/{user}",
                },
            },
        }


# ---- Flickr --------------------------------------------------------------------------------------

FLICKR_LICENSE_CYCLE = ["4", "5", "9", "1", "10", "0", "7"]  # BY, BY-SA, CC0, BY-NC-SA, PDM, ARR, NKCR
_CC = "https://creativecommons.org/licenses"
# flickr.photos.licenses.getInfo as Flickr answers it (ids 11-16: the CC 4.0 family).
FLICKR_LICENSE_INFO: list[dict[str, Any]] = [
    {"id": 0, "name": "All Rights Reserved", "url": ""},
    {"id": 4, "name": "Attribution License", "url": f"{_CC}/by/2.0/"},
    {"id": 6, "name": "Attribution-NoDerivs License", "url": f"{_CC}/by-nd/2.0/"},
    {"id": 3, "name": "Attribution-NonCommercial-NoDerivs License", "url": f"{_CC}/by-nc-nd/2.0/"},
    {"id": 2, "name": "Attribution-NonCommercial License", "url": f"{_CC}/by-nc/2.0/"},
    {"id": 1, "name": "Attribution-NonCommercial-ShareAlike License", "url": f"{_CC}/by-nc-sa/2.0/"},
    {"id": 5, "name": "Attribution-ShareAlike License", "url": f"{_CC}/by-sa/2.0/"},
    {"id": 7, "name": "No known copyright restrictions", "url": "https://www.flickr.com/commons/usage/"},
    {"id": 8, "name": "United States Government Work", "url": "http://www.usa.gov/copyright.shtml"},
    {
        "id": 9,
        "name": "Public Domain Dedication (CC0)",
        "url": "https://creativecommons.org/publicdomain/zero/1.0/",
    },
    {"id": 10, "name": "Public Domain Mark", "url": "https://creativecommons.org/publicdomain/mark/1.0/"},
    {"id": 11, "name": "CC BY 4.0", "url": f"{_CC}/by/4.0/"},
    {"id": 12, "name": "CC BY-SA 4.0", "url": f"{_CC}/by-sa/4.0/"},
    {"id": 13, "name": "CC BY-ND 4.0", "url": f"{_CC}/by-nd/4.0/"},
    {"id": 14, "name": "CC BY-NC 4.0", "url": f"{_CC}/by-nc/4.0/"},
    {"id": 15, "name": "CC BY-NC-SA 4.0", "url": f"{_CC}/by-nc-sa/4.0/"},
    {"id": 16, "name": "CC BY-NC-ND 4.0", "url": f"{_CC}/by-nc-nd/4.0/"},
]


class FakeFlickr(_Counting):
    """GET /services/rest/?method=flickr.photos.search (or flickr.photos.licenses.getInfo)
    &format=json&nojsoncallback=1.

    Photo i has licence `license_of(i)` (FLICKR_LICENSE_CYCLE[i % 7] unless a test says
    otherwise); like Flickr, only photos whose licence is in the `license` parameter are returned,
    unless `leaky` (a misbehaving server: the client must filter again). Answers {"photos":
    {"page", "pages", "perpage", "total", "photo": [...]}, "stat": "ok"}; errors are HTTP 200 with
    {"stat": "fail", "code", "message"}. getInfo answers {"licenses": {"license": license_info},
    "stat": "ok"}, or `info_reply` when a test sets one (a failing getInfo); `info_calls` counts
    the getInfo requests.
    """

    def __init__(self, key: str, link: Link, total: int = 250) -> None:
        super().__init__()
        self.key, self.link, self.total = key, link, total
        self.leaky = False
        self.echo_key = False  # a careless server: repeats the key in titles
        self.license_of: Callable[[int], str] = lambda i: FLICKR_LICENSE_CYCLE[i % 7]
        self.license_info: list[dict[str, Any]] = FLICKR_LICENSE_INFO
        self.info_reply: Reply | None = None
        self.info_calls = 0

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if path != "/services/rest/":
            return Reply(404, b"<html>Not Found</html>", {"Content-Type": "text/html"})
        get = {k: v[0] for k, v in query.items()}
        if get.get("format") != "json" or get.get("nojsoncallback") != "1":
            return Reply(200, b"jsonFlickrApi({})", {"Content-Type": "text/javascript"})
        if get.get("api_key") != self.key:
            return _json(
                200, {"stat": "fail", "code": 100, "message": "Invalid API Key (Key has invalid format)"}
            )
        if get.get("method") == "flickr.photos.licenses.getInfo":
            with self.lock:
                self.info_calls += 1
            if self.info_reply is not None:
                return self.info_reply
            return _json(200, {"licenses": {"license": self.license_info}, "stat": "ok"})
        if get.get("method") != "flickr.photos.search":
            return _json(
                200, {"stat": "fail", "code": 112, "message": f'Method "{get.get("method")}" not found'}
            )
        q, page, per_page = (
            get.get("text", ""),
            int(get.get("page", 1)),
            min(500, int(get.get("per_page", 100))),
        )
        key = (q, page)
        gated = self._gate(key)
        if gated is not None:
            return gated
        wanted = set(get.get("license", "").split(",")) - {""}
        matching = [i for i in range(self.total) if self.leaky or not wanted or self.license_of(i) in wanted]
        pages = max(1, -(-len(matching) // per_page))
        chunk = matching[(page - 1) * per_page : page * per_page]
        extras = set(get.get("extras", "").split(","))
        photos = [self._photo(q, i, extras) for i in chunk]
        self._served(key)
        body = {
            "page": page,
            "pages": pages,
            "perpage": per_page,
            "total": str(len(matching)),
            "photo": photos,
        }
        return _json(200, {"photos": body, "stat": "ok"})

    def _photo(self, query: str, index: int, extras: set[str]) -> dict[str, Any]:
        photo: dict[str, Any] = {
            "id": str(53000000000 + index),
            "owner": f"{1000 + index % 9}@N0{index % 3}",
            "secret": "dcc9f61d9f",
            "server": "65535",
            "farm": 66,
            "title": f"{query} {index}" + (f" api_key={self.key}" if self.echo_key else ""),
            "ispublic": 1,
            "isfriend": 0,
            "isfamily": 0,
        }
        if "license" in extras:
            photo["license"] = self.license_of(index)
        if "owner_name" in extras:
            photo["ownername"] = f"Owner {index % 9}"
        if "url_o" in extras and index % 10 != 3:  # some owners hide originals: url_l only
            photo.update(url_o=self.link(query, index), height_o=3000, width_o="4000")
        if "url_l" in extras:
            photo.update(url_l=self.link(query, index) + "&size=l", height_l="768", width_l=1024)
        return photo
