"""The LIST requests' presigned URLs, signed here after botocore has signed the first one.

Why: botocore's `generate_presigned_url` costs ~0.45 ms of CPU a request (events, endpoint rules,
serializing, then the signature), and a listing in parallel is bound by the client's CPU: on
the 2-core benchmark machine that is a tenth of it (BENCHMARKS.md, "Listing at scale"). The
signature itself (SigV4 in the query string: a canonical request, a string to sign, one HMAC
with a key derived once a day) costs ~0.06 ms.

What stays botocore's: everything that decides the URL and the signature's inputs. The lister
asks botocore to presign a listing's first request; `QuerySigner.learn` reads that URL (the
bucket's endpoint and path as botocore's rules resolved them, the region and service it signed
for, the expiry) and signs the same request again at the same instant. Only if the signature
comes out byte-identical, and the URL is a plain SigV4 one for service `s3` with only the
`host` header signed and no parameters but ListObjectsV2's and SigV4's, are the listing's
other requests signed here; any other URL (another service in the scope, as an Outposts or
Object Lambda ARN gives; another algorithm; another header signed; a parameter of another
scheme; a botocore that signs otherwise) leaves every request to botocore, as before. The
credentials are botocore's, read (and refreshed when they expire) at each signature."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
# ListObjectsV2's parameters and their names in the query string (botocore's service model).
LIST_QUERY = (("Prefix", "prefix"), ("Delimiter", "delimiter"), ("MaxKeys", "max-keys"), ("EncodingType", "encoding-type"), ("ContinuationToken", "continuation-token"))
_AUTH = frozenset({"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"})


def list_query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A ListObjectsV2 call's query parameters, from its API parameters (Bucket is in the URL);
    ValueError for a parameter this does not sign (StartAfter, RequestPayer, ...), which would
    otherwise be left out of the request."""
    unknown = set(params) - {"Bucket", *(key for key, _ in LIST_QUERY)}
    if unknown:
        raise ValueError(f"s3_signer does not sign ListObjectsV2's {', '.join(sorted(unknown))}")
    return [("list-type", "2"), *((name, str(params[key])) for key, name in LIST_QUERY if key in params)]


def _encoded(text: str) -> str:
    return quote(text, safe="-_.~")  # as botocore's percent_encode: UTF-8, all but unreserved


def _host(url: str) -> str:
    """The Host header's value as SigV4 signs it: lower case, the port only if not the scheme's."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _timestamp(now: datetime.datetime | None = None) -> str:
    return (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


class QuerySigner:
    """Signs GET requests to one bucket's endpoint with SigV4 in the query string, as botocore
    presigns them (see the module's docstring); made by `learn`."""

    def __init__(self, base: str, region: str, credentials: Any, expires: int) -> None:
        parts = urlsplit(base)
        self._base = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path or '/'}"
        self._path = parts.path or "/"  # S3 signs the path as sent, without normalizing it
        self._host = _host(base)
        self._region = region
        self._credentials = credentials
        self._expires = str(expires)
        self._key: tuple[str, str, bytes] | None = None  # (secret, day, signing key)

    @classmethod
    def learn(cls, url: str, params: Mapping[str, Any], credentials: Any) -> QuerySigner | None:
        """The signer for the requests after `url`, a URL botocore presigned for the
        ListObjectsV2 call `params` with `credentials`; None when it would not sign exactly as
        botocore did (then botocore presigns every request)."""
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        auth = {k: v for k, v in pairs if k.startswith("X-Amz-")}
        token = auth.pop("X-Amz-Security-Token", None)
        if set(auth) != _AUTH or len(auth) + (token is not None) != sum(k.startswith("X-Amz-") for k, _ in pairs):
            return None  # another scheme's parameters (S3 Express' session token, SigV4a's region set), or one twice
        if auth["X-Amz-Algorithm"] != ALGORITHM or auth["X-Amz-SignedHeaders"] != "host":
            return None
        scope = auth["X-Amz-Credential"].split("/")
        if len(scope) != 5 or scope[3:] != ["s3", "aws4_request"] or not auth["X-Amz-Expires"].isdigit():
            return None
        try:
            if sorted((k, v) for k, v in pairs if not k.startswith("X-Amz-")) != sorted(list_query(params)):
                return None
        except ValueError:
            return None
        signer = cls(f"{parts.scheme}://{parts.netloc}{parts.path}", scope[2], credentials, int(auth["X-Amz-Expires"]))
        try:
            frozen = credentials.get_frozen_credentials()
        except Exception:
            return None
        if frozen.access_key != scope[0] or frozen.token != token:
            return None  # the credentials changed in between (a refresh): botocore's way this time
        _, signature = signer._sign(list_query(params), auth["X-Amz-Date"], frozen)
        return signer if hmac.compare_digest(signature, auth["X-Amz-Signature"]) else None

    def url(self, params: Mapping[str, Any], now: datetime.datetime | None = None) -> str:
        """The presigned URL of the ListObjectsV2 call `params`, signed now (or at `now`)."""
        query, signature = self._sign(list_query(params), _timestamp(now), self._credentials.get_frozen_credentials())
        return f"{self._base}?{query}&X-Amz-Signature={signature}"

    def _sign(self, query: list[tuple[str, str]], stamp: str, frozen: Any) -> tuple[str, str]:
        """(the canonical query string, with the authentication parameters; its signature)."""
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        pairs = [*query, ("X-Amz-Algorithm", ALGORITHM), ("X-Amz-Credential", f"{frozen.access_key}/{scope}"), ("X-Amz-Date", stamp), ("X-Amz-Expires", self._expires), ("X-Amz-SignedHeaders", "host")]
        if frozen.token is not None:  # as botocore: an empty token is sent, empty
            pairs.append(("X-Amz-Security-Token", frozen.token))
        canonical = "&".join(f"{k}={v}" for k, v in sorted((_encoded(k), _encoded(v)) for k, v in pairs))
        request = f"GET\n{self._path}\n{canonical}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        return canonical, hmac.new(self._signing_key(frozen.secret_key, day), to_sign.encode(), hashlib.sha256).hexdigest()

    def _signing_key(self, secret: str, day: str) -> bytes:
        """SigV4's key for a day, region and service: four HMACs, once a day (or a new secret)."""
        known = self._key  # read once: what another thread sets in between is not mixed in
        if known is not None and known[:2] == (secret, day):
            return known[2]
        key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (secret, day, key)
        return key
