"""Clients of the social platforms' documented APIs: publish a post, find it again, read its engagement.

- X API v2: ``POST /2/tweets`` with ``{"text": …}`` answers 201
  ``{"data": {"id", "text"}}``; ``GET /2/users/:id/tweets`` lists the
  account's recent posts; ``GET /2/tweets?ids=…&tweet.fields=public_metrics``
  their counts. OAuth 2.0 user token as ``Authorization: Bearer``. The
  timeline takes ``start_time`` and gives each post's ``created_at``.
- LinkedIn Posts API: ``POST /rest/posts`` with the ``LinkedIn-Version`` and
  ``X-Restli-Protocol-Version: 2.0.0`` headers answers 201 with the new
  post's URN in ``x-restli-id``; ``GET /rest/posts?q=author&author=…`` lists
  the author's posts, each with ``createdAt`` (epoch milliseconds);
  ``GET /rest/socialActions/:urn`` their likes and comments.

Neither API takes an idempotency key. :meth:`Client.find` is how a retry
learns that an earlier attempt published: a post of the account with the
same text, created since that attempt started.

The base URLs come from ``SOCIAL_X_API_URL`` and ``SOCIAL_LINKEDIN_API_URL``;
the token from the account's integration (``credentials["access_token"]``,
encrypted at rest). Errors are sorted for the publisher: :class:`Rejected`
(401, 403, other 4xx: retrying cannot help), :class:`RateLimited` (429, with
the seconds the platform asked us to wait) and :class:`Unavailable` (5xx,
timeouts, refused connections: retried with backoff).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from companyos.foundation.failures import TransientFailure
from social.models import Platform, SocialAccount, SocialPost

# How far the platform's clock may run behind ours: a post it dates this much
# before our attempt started may still be that attempt's.
CLOCK_SKEW = timedelta(seconds=10)


class PlatformError(Exception):
    """The platform did not publish (or answer); ``str()`` is the reason shown on the post."""


class Rejected(PlatformError):
    """The platform refused the request (bad token, forbidden, invalid post): retrying will not help."""


class RateLimited(PlatformError, TransientFailure):
    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(PlatformError, TransientFailure):
    """A 5xx or no answer: worth retrying later."""


@dataclass(frozen=True)
class Published:
    external_id: str
    url: str


@dataclass(frozen=True)
class Engagement:
    likes: int
    reposts: int
    replies: int
    impressions: int


def _retry_after(value: str | None) -> float:
    """``Retry-After`` in seconds (a number or an HTTP date), or the X-style ``x-rate-limit-reset`` epoch."""
    if not value:
        return settings.SOCIAL_PUBLISH_RETRY_BASE_SECONDS
    try:
        return max(float(value), 0.0)
    except ValueError:
        return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)


class Client:
    """One account's calls to its platform; subclasses give the base URL and the endpoints."""

    base_url: str

    def __init__(self, account: SocialAccount) -> None:
        self.account = account
        credentials = account.integration.credentials if account.integration else {}
        if not credentials.get("access_token"):
            raise Rejected(f"{account} has no access token: connect its integration again.")
        self.token = credentials["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, *, body: Any = None, query: dict | None = None) -> tuple[Any, dict]:
        """One call; the decoded JSON answer (None when empty) and the response headers (lower-case names)."""
        url = self.base_url.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers() | ({"Content-Type": "application/json"} if data else {})
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - URL from settings
        try:
            with urllib.request.urlopen(request, timeout=settings.SOCIAL_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                raw, answer_headers = response.read(), {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as error:
            detail = error.read()[:500].decode("utf-8", "replace")
            reason = f"{self.account.get_platform_display()} answered {error.code} to {method} {path}: {detail}"
            if error.code == 429:
                raise RateLimited(reason, retry_after=_retry_after(error.headers.get("Retry-After"))) from error
            if error.code >= 500:
                raise Unavailable(reason) from error
            raise Rejected(reason) from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise Unavailable(f"{self.account.get_platform_display()} could not be reached: {error}") from error
        return (json.loads(raw) if raw else None), answer_headers

    def publish(self, post: SocialPost) -> Published:
        raise NotImplementedError

    def find(self, post: SocialPost, *, since: datetime) -> Published | None:
        """The post if an attempt started at ``since`` published it: the account's, same text, created since."""
        raise NotImplementedError

    def engagement(self, post: SocialPost) -> Engagement:
        raise NotImplementedError


class XClient(Client):
    @property
    def base_url(self) -> str:
        return settings.SOCIAL_X_API_URL

    def _published(self, tweet_id: str) -> Published:
        return Published(external_id=tweet_id, url=f"https://x.com/{self.account.handle}/status/{tweet_id}")

    def publish(self, post: SocialPost) -> Published:
        answer, _ = self.request("POST", "/2/tweets", body={"text": post.content})
        return self._published(answer["data"]["id"])

    def find(self, post: SocialPost, *, since: datetime) -> Published | None:
        start = (since - CLOCK_SKEW).astimezone(UTC)
        query = {
            "max_results": 20, "exclude": "replies", "tweet.fields": "created_at",
            "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }  # fmt: skip
        answer, _ = self.request("GET", f"/2/users/{self.account.external_id}/tweets", query=query)
        for tweet in (answer or {}).get("data", []):
            created = datetime.fromisoformat(tweet["created_at"])
            if tweet.get("text") == post.content and created >= start:
                return self._published(tweet["id"])
        return None

    def engagement(self, post: SocialPost) -> Engagement:
        answer, _ = self.request("GET", "/2/tweets", query={"ids": post.external_id, "tweet.fields": "public_metrics"})
        metrics = answer["data"][0]["public_metrics"]
        return Engagement(
            likes=metrics.get("like_count", 0),
            reposts=metrics.get("retweet_count", 0) + metrics.get("quote_count", 0),
            replies=metrics.get("reply_count", 0),
            impressions=metrics.get("impression_count", 0),
        )


class LinkedInClient(Client):
    @property
    def base_url(self) -> str:
        return settings.SOCIAL_LINKEDIN_API_URL

    def headers(self) -> dict[str, str]:
        return super().headers() | {
            "LinkedIn-Version": settings.SOCIAL_LINKEDIN_VERSION,
            "X-Restli-Protocol-Version": "2.0.0",
        }

    @property
    def author(self) -> str:
        """The account's URN: stored whole, or an organization id."""
        external_id = self.account.external_id
        return external_id if external_id.startswith("urn:li:") else f"urn:li:organization:{external_id}"

    @staticmethod
    def _published(urn: str) -> Published:
        return Published(external_id=urn, url=f"https://www.linkedin.com/feed/update/{urn}/")

    def publish(self, post: SocialPost) -> Published:
        body = {
            "author": self.author,
            "commentary": post.content,
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        _, headers = self.request("POST", "/rest/posts", body=body)
        return self._published(headers["x-restli-id"])

    def find(self, post: SocialPost, *, since: datetime) -> Published | None:
        start = since - CLOCK_SKEW
        query = {"q": "author", "author": self.author, "count": 20, "sortBy": "CREATED"}
        answer, _ = self.request("GET", "/rest/posts", query=query)
        for element in (answer or {}).get("elements", []):
            created = datetime.fromtimestamp(element["createdAt"] / 1000, tz=UTC)
            if element.get("commentary") == post.content and created >= start:
                return self._published(element["id"])
        return None

    def engagement(self, post: SocialPost) -> Engagement:
        answer, _ = self.request("GET", f"/rest/socialActions/{urllib.parse.quote(post.external_id, safe='')}")
        return Engagement(
            likes=answer.get("likesSummary", {}).get("totalLikes", 0),
            reposts=0,
            replies=answer.get("commentsSummary", {}).get("aggregatedTotalComments", 0),
            impressions=0,
        )


CLIENTS: dict[str, type[Client]] = {Platform.TWITTER: XClient, Platform.LINKEDIN: LinkedInClient}


def client_for(account: SocialAccount) -> Client:
    return CLIENTS[account.platform](account)
