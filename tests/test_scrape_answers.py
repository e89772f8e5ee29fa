"""Each provider's `search` on one hand-written answer from an imitation on 127.0.0.1: which field
of the answer lands in which field of the result, where paging ends, what the licence filter drops.

The end-to-end tests (test_scrape*.py) use imitations whose every photo carries the same values in
look-alike fields (source and provider both "flickr"); here each field has its own value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fakeservers import FakeServer, Reply

from officescore.errors import ConfigError
from officescore.scrape.providers import (
    GOOGLE_CUTOFF,
    FlickrProvider,
    GoogleProvider,
    HourExhausted,
    OpenverseProvider,
    ProviderError,
    RateLimited,
    SearchResult,
    TransientError,
    UnsplashProvider,
    WikimediaProvider,
    commons_license,
    google_closed,
)


class Canned(FakeServer):
    """Answers every request with the next of `replies` (the last one again when they run out)."""

    def __init__(self, *replies: Any) -> None:
        super().__init__()
        self.replies = list(replies)

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        with self.lock:
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Reply):
            return reply
        return Reply(200, json.dumps(reply).encode(), {"Content-Type": "application/json"})

    def params(self, n: int = -1) -> dict[str, str]:
        """The query parameters of request `n`, one value each."""
        return {k: v[0] for k, v in self.requests[n][2].items()}


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Canned] = []

    def start(*replies: Any) -> Canned:
        servers.append(Canned(*replies).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# ---- Openverse -------------------------------------------------------------------------------------


def _openverse_item(n: int, license: str = "by") -> dict[str, Any]:
    return {
        "url": f"https://live.staticflickr.com/{n}.jpg",
        "foreign_landing_url": f"https://www.flickr.com/photos/owner/{n}",
        "title": f"Desk {n}",
        "width": "640",
        "height": 480,
        "filetype": "jpg",
        "license": license,
        "license_version": "4.0",
        "license_url": f"https://creativecommons.org/licenses/{license}/4.0/",
        "creator": f"Maker {n}",
        "creator_url": f"https://www.flickr.com/people/maker{n}",
        "attribution": f'"Desk {n}" by Maker {n} is licensed under CC {license.upper()} 4.0.',
        "source": "wikimedia",  # the collection it came from...
        "provider": "flickr",  # ...and the site that hosts it: source wins
    }


def test_openverse_result_fields_come_from_their_own_keys(serve: Any) -> None:
    answer = {"page_count": 1, "results": [_openverse_item(7)]}
    server = serve(answer)
    page = OpenverseProvider(endpoint=server.url, rights_filter="cc_attribute").search("desk", 1)
    assert page.results == [
        SearchResult(
            url="https://live.staticflickr.com/7.jpg",
            landing_page="https://www.flickr.com/photos/owner/7",
            title="Desk 7",
            width=640,
            height=480,
            mime="image/jpeg",
            license="by",
            license_version="4.0",
            license_url="https://creativecommons.org/licenses/by/4.0/",
            creator="Maker 7",
            creator_url="https://www.flickr.com/people/maker7",
            attribution='"Desk 7" by Maker 7 is licensed under CC BY 4.0.',
            source="wikimedia",
        )
    ]
    sent = server.params()
    assert (sent["q"], sent["page"], sent["page_size"], sent["license"], sent["mature"]) == (
        "desk",
        "1",
        "20",
        "by",
        "false",
    )


def test_openverse_a_short_page_is_the_last_whatever_page_count_says(serve: Any) -> None:
    # Openverse's page_count can promise more than it has: a page with fewer than 20 results ends
    # the query (asking for the next one would be answered 400 "Invalid page").
    server = serve(
        {"page_count": 5, "results": [_openverse_item(n) for n in range(20)]},
        {"page_count": 5, "results": [_openverse_item(n) for n in range(3)]},
    )
    provider = OpenverseProvider(endpoint=server.url)
    assert provider.search("desk", 1).last is False
    assert provider.search("desk", 2).last is True


def test_openverse_a_full_page_with_a_photo_without_url_is_not_the_last(serve: Any) -> None:
    items = [_openverse_item(n) for n in range(19)] + [{**_openverse_item(19), "url": None}]
    server = serve({"page_count": 5, "results": items})
    page = OpenverseProvider(endpoint=server.url).search("desk", 1)
    assert (len(page.results), page.last) == (19, False)


@pytest.mark.parametrize("given", ["client_id", "client_secret"])
def test_openverse_half_a_credential_is_refused_before_searching(given: str) -> None:
    with pytest.raises(ConfigError) as refused:
        OpenverseProvider(endpoint="http://127.0.0.1:1/", **{given: "x"})
    missing = "SECRET" if given == "client_id" else "ID"
    assert f"without its client {missing}: set OPENVERSE_CLIENT_{missing} " in str(refused.value)
    assert OpenverseProvider(client_id="a", client_secret="b").pages_for(1000) == 50


def test_openverse_drops_a_photo_outside_the_filter_it_sent(serve: Any) -> None:
    items = [_openverse_item(1), _openverse_item(2, "by-nc"), {**_openverse_item(3), "url": None}]
    server = serve({"page_count": 1, "results": items})
    page = OpenverseProvider(endpoint=server.url, rights_filter="cc_attribute").search("desk", 1)
    assert [r.url for r in page.results] == ["https://live.staticflickr.com/1.jpg"]
    assert page.skipped == 1  # the non-commercial one; the one without a URL is no photo at all


class ShortTokens(Canned):
    """Openverse with client credentials whose tokens last 30 s, less than the client's 60 s margin."""

    def route(self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: dict) -> Reply:
        if path == "/v1/auth_tokens/token/":
            token = f"token-{self.counts[path]}"
            return Reply(200, json.dumps({"access_token": token, "expires_in": 30}).encode())
        return super().route(method, path, query, body, headers)


def test_openverse_asks_for_a_new_token_before_the_old_one_runs_out() -> None:
    server = ShortTokens({"page_count": 9, "results": [_openverse_item(n) for n in range(20)]}).start()
    try:
        provider = OpenverseProvider(endpoint=server.url, client_id="app", client_secret="secret-1")
        provider.search("desk", 1)
        provider.search("desk", 2)
    finally:
        server.stop()
    calls = [(path, headers.get("authorization")) for _, path, _, headers in server.requests]
    assert calls == [
        ("/v1/auth_tokens/token/", None),
        ("/v1/images/", "Bearer token-1"),
        ("/v1/auth_tokens/token/", None),
        ("/v1/images/", "Bearer token-2"),
    ]
    assert provider.secrets() == ["secret-1", "token-2"]  # the token is scrubbed like the secret


# ---- Wikimedia Commons -------------------------------------------------------------------------


def _meta(**values: str) -> dict[str, dict[str, str]]:
    return {key: {"value": value, "source": "commons-desc-page"} for key, value in values.items()}


def _commons_page(index: int, title: str, info: dict[str, Any] | None) -> dict[str, Any]:
    page: dict[str, Any] = {"pageid": 5000 - index, "ns": 6, "title": title, "index": index}
    if info is not None:
        page["imageinfo"] = [{"descriptionurl": f"https://commons.wikimedia.org/wiki/{title}", **info}]
    return page


COMMONS_ANSWER = {
    "continue": {"gsroffset": 20, "continue": "gsroffset||"},
    "query": {
        "pages": [  # id order, as the API sends them; `index` is the search rank
            _commons_page(
                2,
                "File:Old desk.png",
                {
                    "url": "https://upload.wikimedia.org/old.png",
                    "width": 800,
                    "height": 600,
                    "mime": "image/png",
                    "extmetadata": _meta(
                        LicenseShortName="Public domain",
                        License="pd",
                        Credit="<span>Desk Archive</span>",
                        AttributionRequired="false",
                    ),
                },
            ),
            _commons_page(
                4,
                "File:Manual.jpg",
                {
                    "url": "https://upload.wikimedia.org/m.jpg",
                    "mime": "image/jpeg",
                    "extmetadata": _meta(LicenseShortName="GFDL", License="gfdl"),
                },
            ),
            _commons_page(
                1,
                "File:Standing desk.jpg",
                {
                    "thumburl": "https://upload.wikimedia.org/thumb/2048px-desk.jpg",
                    "thumbwidth": 2048,
                    "thumbheight": 1365,
                    "url": "https://upload.wikimedia.org/desk.jpg",
                    "width": 6000,
                    "height": 4000,
                    "mime": "image/jpeg",
                    "extmetadata": _meta(
                        LicenseShortName="CC BY-SA 4.0",
                        License="cc-by-sa-4.0",
                        LicenseUrl="https://creativecommons.org/licenses/by-sa/4.0",
                        Artist='<a href="//commons.wikimedia.org/wiki/User:Ann">Ann &amp; Bo</a>',
                        Credit="Own work",
                        ObjectName="A standing desk",
                    ),  # no AttributionRequired: required, as for most of Commons
                },
            ),
            _commons_page(
                3, "File:Scan.tif", {"url": "https://upload.wikimedia.org/s.tif", "mime": "image/tiff"}
            ),
            _commons_page(5, "File:Later.jpg", None),  # its imageinfo comes with the next answer
        ]
    },
}


def test_wikimedia_result_fields_rank_order_and_licence_filter(serve: Any) -> None:
    server = serve(COMMONS_ANSWER, {"batchcomplete": True, "query": {"pages": []}})
    provider = WikimediaProvider(endpoint=server.url + "/w/api.php", contact="me@example.org")
    page = provider.search("desk", 1)
    assert page.results == [
        SearchResult(
            url="https://upload.wikimedia.org/thumb/2048px-desk.jpg",
            landing_page="https://commons.wikimedia.org/wiki/File:Standing desk.jpg",
            title="A standing desk",
            width=2048,
            height=1365,
            mime="image/jpeg",
            license="by-sa",
            license_version="4.0",
            license_url="https://creativecommons.org/licenses/by-sa/4.0",
            creator="Ann & Bo",
            creator_url="https://commons.wikimedia.org/wiki/User:Ann",
            attribution="Ann & Bo, CC BY-SA 4.0, via Wikimedia Commons",
            source="wikimedia_commons",
        ),
        SearchResult(
            url="https://upload.wikimedia.org/old.png",
            landing_page="https://commons.wikimedia.org/wiki/File:Old desk.png",
            title="Old desk.png",
            width=800,
            height=600,
            mime="image/png",
            license="pd",
            creator="Desk Archive",
            attribution="Desk Archive, Public domain, via Wikimedia Commons (attribution not required)",
            source="wikimedia_commons",
        ),
    ]
    assert page.skipped == 1  # the GFDL file; the TIFF scan is no photo, the last has no info yet
    assert page.last is False and json.loads(page.cursor or "") == COMMONS_ANSWER["continue"]
    end = provider.search("desk", 2, page.cursor)
    assert server.params()["gsroffset"] == "20" and server.params()["continue"] == "gsroffset||"
    assert end.last is True and end.cursor is None


def test_wikimedia_page_two_without_the_token_is_refused_not_page_one_again(serve: Any) -> None:
    server = serve(COMMONS_ANSWER)
    provider = WikimediaProvider(endpoint=server.url, contact="me@example.org")
    with pytest.raises(ProviderError, match="no continue token"):
        provider.search("desk", 2, None)
    assert server.requests == []


def test_commons_non_commercial_licences_keep_their_nc() -> None:
    # Commons forbids them, but a file tagged so must not pass a filter as plain BY or BY-SA.
    assert commons_license("CC BY-NC-SA 2.0", "cc-by-nc-sa-2.0") == ("by-nc-sa", "2.0")
    assert commons_license("CC BY-NC 3.0", None) == ("by-nc", "3.0")
    assert commons_license("Not public domain in the US", "x") == (None, None)


# ---- Unsplash ----------------------------------------------------------------------------------


def _unsplash_photo(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"p{n}",
        "width": 4000,
        "height": "3000",
        "description": None,
        "alt_description": f"a white desk {n}",
        "urls": {
            "raw": f"https://images.unsplash.com/p{n}?ixid=1",
            "full": f"https://images.unsplash.com/p{n}?q=85",
        },
        "links": {
            "html": f"https://unsplash.com/photos/p{n}",
            "download_location": f"https://api.unsplash.com/photos/p{n}/download?ixid=1",
        },
        "user": {
            "username": f"user{n}",
            "name": f"Name {n}",
            "links": {"html": f"https://unsplash.com/@user{n}?x=1"},
        },
        **extra,
    }


def test_unsplash_result_fields_paid_photos_and_the_last_page(serve: Any) -> None:
    paid = _unsplash_photo(2, premium=True, plus=True)
    server = serve({"total_pages": 2, "results": [_unsplash_photo(1), paid, {"urls": {}}]})
    provider = UnsplashProvider(access_key="key-1", endpoint=server.url)
    page = provider.search("desk", 1)
    referral = "utm_source=officescore&utm_medium=referral"
    assert page.results == [
        SearchResult(
            url="https://images.unsplash.com/p1?q=85",  # full: a JPEG rendition; raw is the original
            landing_page=f"https://unsplash.com/photos/p1?{referral}",
            title="a white desk 1",
            width=4000,
            height=3000,
            mime="image/jpeg",
            license="unsplash",
            license_url="https://unsplash.com/license",
            creator="Name 1",
            creator_url=f"https://unsplash.com/@user1?x=1&{referral}",
            attribution=f"Photo by Name 1 (https://unsplash.com/@user1?x=1&{referral}) on Unsplash "
            f"(https://unsplash.com/?{referral})",
            source="unsplash",
            track_url="https://api.unsplash.com/photos/p1/download?ixid=1",
        )
    ]
    assert page.skipped == 1 and page.last is False  # the Unsplash+ photo; page 1 of 2
    assert provider.search("desk", 2).last is True


def test_unsplash_remaining_zero_ends_the_hour_whatever_the_403_says(serve: Any) -> None:
    used_up = Reply(403, b'{"errors": ["Forbidden"]}', {"X-Ratelimit-Remaining": "0"})
    refused = Reply(403, b'{"errors": ["Forbidden"]}', {"X-Ratelimit-Remaining": "41"})
    server = serve(used_up, refused)
    provider = UnsplashProvider(access_key="key-1", endpoint=server.url)
    with pytest.raises(HourExhausted):
        provider.search("desk", 1)
    with pytest.raises(ConfigError, match="refused the access key"):
        provider.search("desk", 1)


def test_unsplash_download_events_a_gone_photo_is_fine_other_errors_are_not(serve: Any) -> None:
    server = serve(Reply(404, b'{"errors": ["Not found"]}'), Reply(400, b'{"errors": ["ixid is required"]}'))
    provider = UnsplashProvider(access_key="key-1", endpoint=server.url)
    provider.track_download(server.url + "/photos/p1/download?ixid=1")
    with pytest.raises(ProviderError, match="ixid is required"):
        provider.track_download(server.url + "/photos/p2/download")
    # A look-alike host is not the API's: the key is never sent there.
    api = UnsplashProvider(access_key="key-1", endpoint="https://api.unsplash.com/")
    with pytest.raises(ProviderError, match="not on the Unsplash API host"):
        api.track_download("https://evilapi.unsplash.com/photos/p1/download")


# ---- Flickr ------------------------------------------------------------------------------------

FLICKR_INFO = {
    "stat": "ok",
    "licenses": {
        "license": [
            {"id": 0, "name": "All Rights Reserved", "url": ""},
            {"id": 4, "name": "Attribution License", "url": "https://creativecommons.org/licenses/by/2.0/"},
            {"id": 9, "name": "CC0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
            {
                "id": 17,
                "name": "BY-SA 3.0 Germany",
                "url": "https://creativecommons.org/licenses/by-sa/3.0/de/",
            },
        ]
    },
}


def _flickr_photos(page: int, pages: int, photos: list[dict[str, Any]]) -> dict[str, Any]:
    return {"stat": "ok", "photos": {"page": page, "pages": pages, "perpage": 100, "photo": photos}}


def test_flickr_result_fields_attribution_and_ported_licences(serve: Any) -> None:
    photos = [
        {
            "id": "501",
            "owner": "12@N01",
            "title": "Desk",
            "license": "4",
            "ownername": "Ann",
            "url_o": "https://live.staticflickr.com/501_o.jpg",
            "width_o": "4000",
            "height_o": 3000,
            "url_l": "https://live.staticflickr.com/501_b.jpg",
            "width_l": 1024,
            "height_l": 768,
        },
        {
            "id": "502",
            "owner": "13@N02",
            "title": "",
            "license": 9,
            "url_l": "https://live.staticflickr.com/502_b.jpg",
            "width_l": "1024",
            "height_l": "683",
        },
        {
            "id": "503",
            "owner": "14@N03",
            "title": "Lamp",
            "license": "17",
            "ownername": "Bo",
            "url_o": "https://live.staticflickr.com/503_o.jpg",
            "width_o": 800,
            "height_o": 600,
        },
        {"id": "504", "owner": "15@N04", "title": "Mine", "license": "0", "url_o": "https://x/504.jpg"},
        {"id": "505", "owner": "16@N05", "title": "Hidden", "license": "4"},  # no large rendition
    ]
    server = serve(FLICKR_INFO, _flickr_photos(1, 3, photos))
    provider = FlickrProvider(api_key="fkey", endpoint=server.url)
    page = provider.search("desk", 1)
    assert server.params()["license"] == "4,9,17"
    assert page.results == [
        SearchResult(
            url="https://live.staticflickr.com/501_o.jpg",
            landing_page="https://www.flickr.com/photos/12@N01/501",
            title="Desk",
            width=4000,
            height=3000,
            license="by",
            license_version="2.0",
            license_url="https://creativecommons.org/licenses/by/2.0/",
            creator="Ann",
            creator_url="https://www.flickr.com/photos/12@N01/",
            attribution='"Desk" by Ann is licensed under CC BY 2.0.',
            source="flickr",
        ),
        SearchResult(
            url="https://live.staticflickr.com/502_b.jpg",
            landing_page="https://www.flickr.com/photos/13@N02/502",
            width=1024,
            height=683,
            license="cc0",
            license_version="1.0",
            license_url="https://creativecommons.org/publicdomain/zero/1.0/",
            creator="13@N02",
            creator_url="https://www.flickr.com/photos/13@N02/",
            attribution='"Untitled" by 13@N02 is marked with CC0 1.0.',
            source="flickr",
        ),
        SearchResult(
            url="https://live.staticflickr.com/503_o.jpg",
            landing_page="https://www.flickr.com/photos/14@N03/503",
            title="Lamp",
            width=800,
            height=600,
            license="by-sa",
            license_version="3.0",
            license_url="https://creativecommons.org/licenses/by-sa/3.0/de/",  # the ported deed
            creator="Bo",
            creator_url="https://www.flickr.com/photos/14@N03/",
            attribution='"Lamp" by Bo is licensed under CC BY-SA 3.0.',
            source="flickr",
        ),
    ]
    assert page.skipped == 1 and page.last is False  # all rights reserved; page 1 of 3


def test_flickr_paging_ends_at_its_4000_result_cap(serve: Any) -> None:
    server = serve(FLICKR_INFO, _flickr_photos(39, 60, []), _flickr_photos(40, 60, []))
    provider = FlickrProvider(api_key="fkey", endpoint=server.url)
    assert provider.pages_for(10_000) == 40
    assert provider.search("desk", 39).last is False
    assert provider.search("desk", 40).last is True  # 40 x 100 = 4000, whatever `pages` says


def test_flickr_service_unavailable_is_worth_retrying(serve: Any) -> None:
    down = {"stat": "fail", "code": 105, "message": "Service currently unavailable"}
    server = serve(FLICKR_INFO, down)
    with pytest.raises(TransientError, match="Service currently unavailable"):
        FlickrProvider(api_key="fkey", endpoint=server.url).search("desk", 1)


# ---- Google Custom Search ----------------------------------------------------------------------


def test_google_result_fields_and_the_closing_instant(serve: Any) -> None:
    item = {
        "link": "https://cdn.example.com/desk.jpg",
        "title": "A desk",
        "displayLink": "www.example.com",
        "mime": "image/jpeg",
        "image": {"contextLink": "https://www.example.com/desks", "width": 1600, "height": "1200"},
    }
    answer = {"items": [item, {"title": "no link"}], "queries": {"nextPage": [{"startIndex": 11}]}}
    server = serve(answer)
    page = GoogleProvider(developer_key="gkey", cx="gcx", endpoint=server.url).search("desk", 1)
    assert page.results == [
        SearchResult(
            url="https://cdn.example.com/desk.jpg",
            landing_page="https://www.example.com/desks",
            title="A desk",
            width=1600,
            height=1200,
            mime="image/jpeg",
            source="www.example.com",
        )
    ]
    assert page.last is True  # 2 items where 10 were asked for: the end, whatever nextPage says
    assert server.params()["start"] == "1" and server.params()["num"] == "10"
    assert google_closed(GOOGLE_CUTOFF) and not google_closed(GOOGLE_CUTOFF - timedelta(seconds=1))


def test_wikimedia_an_answer_with_a_page_that_is_no_object_keeps_the_others(serve: Any) -> None:
    # A proxy or a broken mirror may put null among the pages; the photos beside it still count.
    pages = [None, *COMMONS_ANSWER["query"]["pages"]]
    server = serve({"query": {"pages": pages}})
    page = WikimediaProvider(endpoint=server.url, contact="me@example.org").search("desk", 1)
    assert [r.title for r in page.results] == ["A standing desk", "Old desk.png"]


# ---- answers that mean "wait" or "try again" -----------------------------------------------------


def _provider(name: str, url: str, timeout: float = 30.0) -> Any:
    return {
        "openverse": lambda: OpenverseProvider(endpoint=url, timeout=timeout),
        "wikimedia": lambda: WikimediaProvider(endpoint=url, contact="me@example.org", timeout=timeout),
        "unsplash": lambda: UnsplashProvider(access_key="key-1", endpoint=url, timeout=timeout),
        "flickr": lambda: FlickrProvider(api_key="fkey", endpoint=url, timeout=timeout),
    }[name]()


PROVIDERS = ["openverse", "wikimedia", "unsplash", "flickr"]


@pytest.mark.parametrize("name", PROVIDERS)
def test_429_is_a_wait_for_as_long_as_retry_after_says(serve: Any, name: str) -> None:
    server = serve(FLICKR_INFO, Reply(429, b"slow down", {"Retry-After": "7"}))
    if name != "flickr":
        server.replies.pop(0)  # only Flickr asks for its licence table first
    with pytest.raises(RateLimited) as waited:
        _provider(name, server.url).search("desk", 1)
    assert waited.value.seconds == 7.0


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_worth_retrying(serve: Any, name: str, status: int) -> None:
    server = serve(FLICKR_INFO, Reply(status, b"<html>oops</html>", {"Content-Type": "text/html"}))
    if name != "flickr":
        server.replies.pop(0)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        _provider(name, server.url).search("desk", 1)


@pytest.mark.parametrize("name", PROVIDERS)
def test_an_answer_slower_than_the_timeout_is_worth_retrying(serve: Any, name: str) -> None:
    # A read timeout, not a refused connection: requests raises ReadTimeout, no ConnectionError.
    server = serve(FLICKR_INFO, Reply(200, b"{}", delay=1.0))
    if name != "flickr":
        server.replies.pop(0)
    with pytest.raises(TransientError, match="unreachable: ReadTimeout"):
        _provider(name, server.url, timeout=0.2).search("desk", 1)


def test_wikimedia_a_ratelimited_error_is_a_wait(serve: Any) -> None:
    server = serve({"error": {"code": "ratelimited", "info": "You've exceeded your rate limit."}})
    with pytest.raises(RateLimited):
        _provider("wikimedia", server.url).search("desk", 1)
