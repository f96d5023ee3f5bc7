"""Stock-footage providers with an official JSON search API: the interface, Pexels, Pixabay and a registry.

A provider only knows its API: which request searches, how its answer reads, what its rate-limit headers
mean and what its licence is. HTTP itself (retries, backoff, rate limits, timeouts, the cache) is the
client's job (``scrapers.scrape.ApiClient``), passed to ``search`` as anything with a ``get_json`` method.

Adding a provider: subclass ``Provider``, fill in the class attributes and ``search``, decorate with
``@register``. Its key comes from the environment variable ``key_env``; its base URL is a constructor
argument (``--base-url NAME=URL`` on the command line), which is how the tests point it at a local server.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def video_id(value: Any) -> str | None:
    """The API's id as text when it is safe in a file name (.<provider>_<id>.part); None: skip the hit."""
    text = str(value).strip()
    return text if _ID.fullmatch(text) else None


class ScrapeError(Exception):
    """An expected problem, told to the user as one line (missing key, refused key, unreachable, ...)."""


class MissingKeyError(ScrapeError):
    pass


class AuthError(ScrapeError):
    pass


class UnreachableError(ScrapeError):
    pass


class RateLimitedError(ScrapeError):
    pass


class NoResultsError(ScrapeError):
    pass


@dataclass(frozen=True)
class Rendition:
    """One downloadable encoding of a video."""

    url: str
    width: int
    height: int
    size: int | None = None  # bytes, when the API says
    quality: str = ""  # the provider's name for it: hd/sd (Pexels), large/medium/small/tiny (Pixabay)

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)


@dataclass(frozen=True)
class Video:
    """A search hit with what attribution needs (author, page) and its renditions."""

    provider: str
    id: str
    page_url: str
    author: str
    author_url: str
    duration: float  # seconds, as the API says
    renditions: tuple[Rendition, ...]
    licence: str
    licence_url: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.id)


@dataclass(frozen=True)
class SearchPage:
    videos: list[Video]
    next_page: int | None  # None: this was the last page
    total: int | None = None


class JsonClient(Protocol):
    def get_json(self, provider: Provider, url: str, params: Mapping[str, Any],
                 headers: Mapping[str, str]) -> Any: ...


def pick_rendition(renditions: tuple[Rendition, ...] | list[Rendition], resolution: int) -> Rendition | None:
    """The rendition whose short side is closest to ``resolution`` (a tie goes to the larger one)."""
    usable = [r for r in renditions if r.url and r.width > 0 and r.height > 0]
    if not usable:
        return None
    return min(usable, key=lambda r: (abs(r.short_side - resolution), -r.short_side))


class Provider(ABC):
    """A search API. Subclasses set the class attributes and implement ``search``."""

    name: ClassVar[str]  # registry key and the `provider` column of sources.csv
    title: ClassVar[str]  # for messages: "Pexels"
    key_env: ClassVar[str]  # environment variable (or .env entry) holding the key
    key_url: ClassVar[str]  # where a user gets a key
    default_base_url: ClassVar[str]
    licence: ClassVar[str]
    licence_url: ClassVar[str]
    max_per_page: ClassVar[int]
    min_per_page: ClassVar[int] = 1
    # X-Ratelimit-Reset: a UNIX time (Pexels) or seconds from now (Pixabay)
    reset_is_timestamp: ClassVar[bool] = False

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self.api_key = api_key
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    @classmethod
    def missing_key_message(cls) -> str:
        return (f"{cls.key_env} is not set: get a free {cls.title} API key at {cls.key_url} and put "
                f"{cls.key_env}=<key> in .env (see .env.example), or export it")

    def auth_message(self, status: int) -> str:
        return (f"{self.title} refused the API key (HTTP {status}): check {self.key_env} in .env "
                f"(keys: {self.key_url})")

    def is_auth_failure(self, status: int, body: str) -> bool:
        return status in (401, 403)

    def clamp_per_page(self, per_page: int) -> int:
        return max(self.min_per_page, min(self.max_per_page, per_page))

    def seconds_until_reset(self, reset_value: float, now: float) -> float:
        return max(0.0, reset_value - now) if self.reset_is_timestamp else max(0.0, reset_value)

    @abstractmethod
    def search(self, client: JsonClient, query: str, page: int, per_page: int) -> SearchPage:
        """One page of video results for ``query`` (pages count from 1)."""


PROVIDERS: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    PROVIDERS[cls.name] = cls
    return cls


def make_provider(name: str, env: Mapping[str, str], base_url: str | None = None) -> Provider:
    """The provider ``name`` with its key from ``env``; MissingKeyError names the variable to set."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        raise ScrapeError(f"unknown provider {name!r} (known: {', '.join(sorted(PROVIDERS))})") from None
    key = (env.get(cls.key_env) or "").strip()
    if not key:
        raise MissingKeyError(cls.missing_key_message())
    return cls(key, base_url)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@register
class Pexels(Provider):
    """https://www.pexels.com/api/documentation/ : GET {base}/search, header `Authorization: <key>`."""

    name = "pexels"
    title = "Pexels"
    key_env = "PEXELS_API_KEY"
    key_url = "https://www.pexels.com/api/"
    default_base_url = "https://api.pexels.com/videos"
    licence = "Pexels License"
    licence_url = "https://www.pexels.com/license/"
    max_per_page = 80
    reset_is_timestamp = True

    def search(self, client: JsonClient, query: str, page: int, per_page: int) -> SearchPage:
        per_page = self.clamp_per_page(per_page)
        data = client.get_json(self, f"{self.base_url}/search",
                               {"query": query, "page": page, "per_page": per_page},
                               {"Authorization": self.api_key})
        videos = [v for v in (self._video(item) for item in data.get("videos") or []) if v is not None]
        more = bool(data.get("next_page")) and bool(data.get("videos"))
        return SearchPage(videos, page + 1 if more else None, data.get("total_results"))

    def _video(self, item: Mapping[str, Any]) -> Video | None:
        vid = video_id(item.get("id"))
        if vid is None:  # missing, or not usable in a file name (an id is part of the temporary file name)
            return None
        renditions = tuple(
            Rendition(url=f.get("link") or "", width=_int(f.get("width")), height=_int(f.get("height")),
                      size=f.get("size"), quality=str(f.get("quality") or ""))
            for f in item.get("video_files") or []
            if (f.get("file_type") or "video/mp4") == "video/mp4")
        user = item.get("user") or {}
        return Video(provider=self.name, id=vid, page_url=item.get("url") or "",
                     author=user.get("name") or "", author_url=user.get("url") or "",
                     duration=float(item.get("duration") or 0), renditions=renditions,
                     licence=self.licence, licence_url=self.licence_url)


@register
class Pixabay(Provider):
    """https://pixabay.com/api/docs/ : GET {base}/?key=..&q=..; the key travels in the query string."""

    name = "pixabay"
    title = "Pixabay"
    key_env = "PIXABAY_API_KEY"
    key_url = "https://pixabay.com/api/docs/"
    default_base_url = "https://pixabay.com/api/videos"
    licence = "Pixabay Content License"
    licence_url = "https://pixabay.com/service/license-summary/"
    max_per_page = 200
    min_per_page = 3
    reset_is_timestamp = False
    SIZES = ("large", "medium", "small", "tiny")

    def is_auth_failure(self, status: int, body: str) -> bool:
        # A bad key is answered "[ERROR 400] Invalid or missing API key".
        return status in (401, 403) or (status == 400 and "key" in body.lower())

    def search(self, client: JsonClient, query: str, page: int, per_page: int) -> SearchPage:
        per_page = self.clamp_per_page(per_page)
        data = client.get_json(self, f"{self.base_url}/",
                               {"key": self.api_key, "q": query, "page": page, "per_page": per_page,
                                "video_type": "film", "safesearch": "true"}, {})
        hits = data.get("hits") or []
        total = data.get("totalHits")
        videos = [v for v in (self._video(item) for item in hits) if v is not None]
        more = bool(hits) and total is not None and page * per_page < _int(total)
        return SearchPage(videos, page + 1 if more else None, total)

    def _video(self, item: Mapping[str, Any]) -> Video | None:
        vid = video_id(item.get("id"))
        if vid is None:  # missing, or not usable in a file name (an id is part of the temporary file name)
            return None
        files = item.get("videos") or {}
        renditions = tuple(  # a missing size comes as an empty URL and size 0
            Rendition(url=f.get("url") or "", width=_int(f.get("width")), height=_int(f.get("height")),
                      size=_int(f.get("size")) or None, quality=size)
            for size in self.SIZES if isinstance(f := files.get(size), Mapping) and f.get("url"))
        user, user_id = item.get("user") or "", item.get("user_id")
        author_url = f"https://pixabay.com/users/{user}-{user_id}/" if user and user_id else ""
        return Video(provider=self.name, id=vid, page_url=item.get("pageURL") or "",
                     author=user, author_url=author_url, duration=float(item.get("duration") or 0),
                     renditions=renditions, licence=self.licence, licence_url=self.licence_url)
