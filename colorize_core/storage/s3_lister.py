"""The LIST requests of one S3 listing, made from one thread: an asyncio event loop with aiohttp,
each request a presigned URL (SigV4 in the query string: botocore presigns the first, and
`s3_signer` the others where it signs exactly as botocore did), each page read by
`s3_list_page` straight into columns.

Why not botocore's own calls from a pool of threads (as before): each request costs ~1.7 ms of
Python in botocore (events, endpoint rules, serializing, signing, http.client), and 16 threads on
2 cores spend as much again handing the interpreter lock to one another; a listing in parallel
was bound by the client's CPU, not by the store (BENCHMARKS.md, "Listing at scale"). Here a
request costs a signature (~0.06 ms; botocore's presigning, ~0.45 ms, for the first) and
aiohttp's C parser, and waiting for many answers at once costs nothing: a listing's requests
in flight are a number (`concurrency`), not threads.

What still comes from botocore, unchanged: the endpoint (AWS_ENDPOINT_URL(_S3), the region,
path or virtual-host addressing), the credentials (the whole chain, refreshed as they expire)
and the signing scheme (s3_signer only repeats a plain SigV4 signature it has checked against
botocore's own). What botocore's HTTP layer did and is done here the same way: TLS verified
against AWS_CA_BUNDLE (or the `ca_bundle` of the AWS config), REQUESTS_CA_BUNDLE, else certifi's
bundle; HTTP(S)_PROXY and NO_PROXY; the client's connect and read timeouts; and S3's region
redirect (a bucket in another region than the client's answers 301, 307 or 400 with its region
in `x-amz-bucket-region` or in the error document: the request is signed again for that region,
as botocore's redirector does). Errors become the same StorageErrors as every other call's
(`S3Store._error`), and a page is retried on its own under the same policy
(errors.call_with_retries_async)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from xml.etree import ElementTree

from colorize_core.storage import s3_list_page
from colorize_core.storage.errors import RetryPolicy, call_with_retries_async
from colorize_core.storage.objects import StorageError
from colorize_core.storage.s3_list_page import ListPage, NotAListing
from colorize_core.storage.s3_signer import QuerySigner

log = logging.getLogger(__name__)
T = TypeVar("T")

PRESIGN_EXPIRES_S = 900  # a URL is sent at once; a slow connect still finds it valid
REDIRECT_STATUSES = frozenset({301, 302, 307, 400})  # S3's answers to a request signed for the wrong region


@dataclass(eq=False)
class _Chain:
    """One prefix's chain of pages: waiting to start, running, or done. Pages wait here for the
    consumer; `waiter` wakes a consumer that is waiting for the next one."""

    prefix: str
    delimiter: bool
    label: str
    pages: deque[ListPage] = field(default_factory=deque)
    done: bool = False
    error: BaseException | None = None
    waiter: asyncio.Future[None] | None = None


def _verify() -> str | bool:
    """The CA bundle botocore's client verifies TLS with (a path), as it resolves it: the session's
    `ca_bundle` (AWS_CA_BUNDLE, or the AWS config file), REQUESTS_CA_BUNDLE, else its default."""
    import botocore.httpsession
    import botocore.session

    verify = botocore.session.get_session().get_config_variable("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE") or True
    return botocore.httpsession.get_cert_path(verify)  # type: ignore[no-any-return]


def _ssl_context() -> ssl.SSLContext:
    return _ssl_context_for(_verify())


@functools.lru_cache(maxsize=4)
def _ssl_context_for(path: str | bool) -> ssl.SSLContext:
    """One context per CA bundle and process: loading certifi's bundle takes ~45 ms."""
    try:
        if isinstance(path, str) and os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path if isinstance(path, str) else None)
    except (OSError, ssl.SSLError) as exc:
        raise StorageError(f"cannot read the CA bundle {path} (AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE or the AWS config's ca_bundle): {exc}", transient=False) from None


def _proxy(url: str) -> str | None:
    """The proxy botocore's client would send `url` through (HTTP(S)_PROXY, NO_PROXY), or None,
    its scheme completed as botocore's `_fix_proxy_url` completes it."""
    from urllib.parse import urlsplit

    from botocore.utils import get_environ_proxies

    proxy = get_environ_proxies(url).get(urlsplit(url).scheme)
    if not proxy or proxy.startswith(("http:", "https:")):
        return proxy or None
    return f"http:{proxy}" if proxy.startswith("//") else f"http://{proxy}"


def _error_fields(body: bytes) -> dict[str, str]:
    """The fields of an S3 error document (Code, Message, Region, ...), or none."""
    try:
        root = ElementTree.fromstring(body) if body.strip() else None
    except ElementTree.ParseError:
        return {}
    if root is None or root.tag.rpartition("}")[2] != "Error":
        return {}
    return {child.tag.rpartition("}")[2]: child.text or "" for child in root}


def _service_error(status: int, body: bytes) -> Exception:
    """An error answer as botocore's ClientError (the code and message of its error document, or
    the status alone), so that it is classified and worded as every other call's error."""
    from botocore.exceptions import ClientError

    fields = _error_fields(body)
    code, message = fields.get("Code") or str(status), fields.get("Message", "")
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "ListObjectsV2")


# What aiohttp's messages carry that must not reach a log: a URL's query (a presigned URL's
# signature), a proxy URL's user and password, and an SSLContext's repr (noise).
_SECRETS = (
    (re.compile(r"\?[^\s'\"]*"), "?..."),
    (re.compile(r"//[^/@\s'\"]*@"), "//...@"),
    (re.compile(r" ?ssl:<[^>]*>"), ""),
)


def _redacted(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _lower_host(url: str) -> str:
    """The URL with its scheme and host in lower case: aiohttp sends the Host header as written,
    and SigV4 signs the host in lower case (botocore's requests sent it so too)."""
    cut = url.find("/", url.find("//") + 2)
    return url[:cut].lower() + url[cut:] if cut > 0 else url.lower()


class HTTPFailure(Exception):
    """A LIST request that failed below S3 (connection, TLS, timeout, a broken answer), worded
    without the request's query or a proxy's password: aiohttp's messages carry the URLs, and a
    presigned URL lets anyone who reads the log list the bucket until it expires. A failed
    certificate is permanent; a refused, reset or cut-off connection, a timeout or a garbled
    answer is worth another try."""

    def __init__(self, exc: BaseException) -> None:
        import aiohttp

        super().__init__(f"{type(exc).__name__}: {_redacted(str(exc))}")
        self.transient = not isinstance(exc, (aiohttp.ClientSSLError, aiohttp.InvalidURL))


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Lister:
    """The LIST requests of one listing: `chain` asks for the chain of pages under a prefix and
    returns them in order as they come; at most `concurrency` chains run at once, so at most
    that many requests are in flight. Use it as a context manager: leaving it cancels what is
    still running.

    `presigner(region)` is a botocore S3 client to presign with (None: the client's own
    region); `credentials(region)` the credentials it signs with, if the lister may sign the
    requests after the first itself (s3_signer); `error(exc, prefix)` words a failure as the
    store's StorageError."""

    def __init__(
        self,
        presigner: Callable[[str | None], Any],
        bucket: str,
        *,
        concurrency: int,
        error: Callable[[BaseException, str], StorageError],
        policy: RetryPolicy | None = None,
        what: str = "",
        region: str | None = None,
        on_request: Callable[[dict[str, Any]], None] | None = None,
        credentials: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._presigner, self._bucket, self._error = presigner, bucket, error
        self._credentials = credentials
        self._signers: dict[str | None, QuerySigner | None] = {}  # by region: None, botocore presigns each request
        self._concurrency = max(1, concurrency)
        self._what = what or f"s3://{bucket}"
        self._on_request = on_request
        self.region = region  # None: the client's; else the bucket's, learned from a redirect
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._ssl: ssl.SSLContext | None = None
        self.page_size = 1000  # keys per request (S3's maximum)
        self._policy = policy or RetryPolicy.from_env()  # read once, not a page
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._waiting: deque[_Chain] = deque()  # chains asked for, not started yet
        self._running = 0

    # The loop runs in the caller's thread, while the caller waits for a page (`_run`): the
    # requests in flight progress then, and between two waits their answers wait in the socket
    # buffers. No second thread, so no handing of the interpreter lock to and fro a page (a
    # loop in a thread of its own cost a third more CPU). Only a caller that is itself inside
    # a running event loop (which cannot be run again) gets a thread for this loop; the choice
    # is made once, when the listing starts.
    #
    # At most `concurrency` chains run at once, started in the order they were asked for (the
    # order a listing reads them in): so at most that many requests are in flight, each request
    # is signed just before it is sent (a URL signed long before could expire in the queue), and
    # a level with 100,000 prefixes costs 100,000 small records, not 100,000 tasks.

    def __enter__(self) -> Lister:
        if _in_running_loop():
            self._thread = threading.Thread(target=self._loop.run_forever, name="s3-list", daemon=True)
            self._thread.start()
        try:
            self._run(self._open())
        except BaseException as exc:
            self._stop_loop()
            if isinstance(exc, Exception) and not isinstance(exc, StorageError):
                raise self._error(exc, "") from None  # botocore's: a profile that does not exist, ...
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self._run(self._close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is None:
            return self._loop.run_until_complete(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self) -> None:
        import aiohttp

        config = self._presigner(self.region).meta.config
        self._session = aiohttp.ClientSession(
            # Closed TLS connections aborted when the session closes (a listing stopped early
            # leaves some mid-answer); Pythons that no longer leak them say so, and it is off.
            connector=aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=300, enable_cleanup_closed=getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", True)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout),
            trust_env=False,  # proxies as botocore picks them (`_proxy`); no ~/.netrc credentials beside the signature
        )

    async def _close(self) -> None:
        """Cancel what still runs (chains, and a wait a KeyboardInterrupt cut short) and close
        the session (its TLS connections aborted: see `_open`)."""
        self._waiting.clear()
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._session.close()
        await self._loop.shutdown_default_executor()  # the resolver's threads

    def chain(self, prefix: str, *, delimiter: bool, label: str = "") -> Iterator[ListPage]:
        """The pages of `prefix` (a key prefix of the bucket), with Delimiter "/" or without,
        started as soon as fewer than `concurrency` chains run; the iterator waits for each page
        in turn and raises the chain's error (a StorageError) where it stopped. `label` names
        the prefix in errors."""
        chain = _Chain(prefix, delimiter, label or prefix)
        if self._thread is None:
            self._admit(chain)
        else:
            self._loop.call_soon_threadsafe(self._admit, chain)
        return self._drain(chain)

    def _drain(self, chain: _Chain) -> Iterator[ListPage]:
        while True:
            done = chain.done  # read first: a chain marks itself done after its last page
            if chain.pages:
                yield chain.pages.popleft()
            elif done:
                if chain.error is not None:
                    raise chain.error
                return
            else:
                self._run(self._wait(chain))

    async def _wait(self, chain: _Chain) -> None:
        if not chain.pages and not chain.done:
            chain.waiter = asyncio.get_running_loop().create_future()
            await chain.waiter

    @staticmethod
    def _wake(chain: _Chain) -> None:
        if chain.waiter is not None and not chain.waiter.done():
            chain.waiter.set_result(None)
        chain.waiter = None

    def _admit(self, chain: _Chain) -> None:
        """(On the loop.) Queue a chain and start what the limit allows."""
        self._waiting.append(chain)
        self._fill()

    def _fill(self) -> None:
        while self._waiting and self._running < self._concurrency:
            chain = self._waiting.popleft()
            self._running += 1
            self._loop.create_task(self._run_chain(chain)).add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._running -= 1
        self._fill()

    async def _run_chain(self, chain: _Chain) -> None:
        token: str | None = None
        try:
            while True:
                params: dict[str, Any] = {"Bucket": self._bucket, "Prefix": chain.prefix, "MaxKeys": self.page_size, "EncodingType": "url"}
                if chain.delimiter:
                    params["Delimiter"] = "/"
                if token:
                    params["ContinuationToken"] = token
                page = await call_with_retries_async(lambda: self._page(params, chain.label), f"{self._what}: list {chain.label!r}", self._policy)
                chain.pages.append(page)
                self._wake(chain)
                if not page.truncated:
                    break
                token = page.next_token
                if not token:  # a store that says "more" without saying where: never a silent short listing
                    raise StorageError(f"{self._what}: listing {chain.label!r} was truncated without a continuation token; the store's answer is broken, try again")
        except Exception as exc:
            chain.error = exc
        finally:  # (cancelled too: the listing is closing, nobody waits)
            chain.done = True
            self._wake(chain)

    async def _page(self, params: dict[str, Any], label: str, redirected: bool = False) -> ListPage:
        """One page, read; a failure as the store's StorageError (transient or not). Presigning
        may refresh expiring credentials (a call to STS or the instance metadata): the loop
        waits for it, as every thread waited for it in botocore."""
        import aiohttp
        import yarl

        if self._on_request is not None:
            self._on_request(dict(params))
        region = self.region
        try:
            url = self._url(params, region)
            async with self._session.get(yarl.URL(url, encoded=True), proxy=self._proxy_for(url), ssl=self._ssl_for(url), allow_redirects=False) as answer:
                body, status = await answer.read(), answer.status
                redirect = answer.headers.get("x-amz-bucket-region")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._error(HTTPFailure(exc), label) from None
        except StorageError:
            raise  # (the CA bundle)
        except Exception as exc:  # botocore's, while presigning: credentials, parameters
            raise self._error(exc, label) from None
        if status == 200:
            try:
                page = s3_list_page.fast_page(body) or s3_list_page.tree_page(body)
            except NotAListing:
                # A cut-off or empty 200 answer, or an error document in one: read as a page it
                # would look like the last one and drop the rest.
                raise StorageError(f"{self._what}: cannot list {label!r}: the store's answer was not a listing page (cut off?)", transient=True) from None
            return page.url_decoded()
        redirect = redirect or (_error_fields(body).get("Region") if status in REDIRECT_STATUSES else None)
        if status in REDIRECT_STATUSES and redirect and redirect != region and not redirected:
            log.info("%s: the bucket is in region %s; LIST requests are signed for it", self._what, redirect)
            self.region = redirect
            return await self._page(params, label, redirected=True)
        raise self._error(_service_error(status, body), label)

    def _url(self, params: dict[str, Any], region: str | None) -> str:
        """The request's presigned URL: signed by s3_signer where it signed the region's first
        request exactly as botocore did, else by botocore."""
        signer = self._signers.get(region)
        if signer is not None:
            return signer.url(params)
        url = self._presigner(region).generate_presigned_url("list_objects_v2", Params=params, ExpiresIn=PRESIGN_EXPIRES_S)
        if region not in self._signers:  # learned once a region; a None stays botocore's
            self._signers[region] = QuerySigner.learn(url, params, self._credentials(region)) if self._credentials is not None else None
            if self._signers[region] is None:
                log.debug("%s: LIST requests presigned by botocore, each one", self._what)
        return _lower_host(url)

    def _ssl_for(self, url: str) -> ssl.SSLContext | bool:
        """The TLS context for an https URL (made on the first: an http store needs no CA bundle)."""
        if not url.startswith("https:"):
            return True  # aiohttp's default; unused without TLS
        if self._ssl is None:
            self._ssl = _ssl_context()
        return self._ssl

    def _proxy_for(self, url: str) -> str | None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        where = (parts.scheme, parts.netloc)
        if where not in self._proxies:
            self._proxies[where] = _proxy(url)
        return self._proxies[where]
