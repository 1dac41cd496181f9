"""Reading one S3 ListObjectsV2 page for listing, instead of botocore's parser, into columns.

Why: botocore walks every key's fields in Python and parses each LastModified with dateutil,
~70 ms of CPU per 1,000 keys on a 2-core machine, more than a request's 30 ms of latency; even
ElementTree (C) costs 10-20 ms a page, since it builds seven elements a key, and a dict and an
object a key after it cost as much again. A parallel listing is then bound by the interpreter,
not by the store (BENCHMARKS.md, "Listing at scale"). Listing reads only Key, Size, ETag, the
common prefixes and the paging fields, and hands them on as Arrow arrays, never an object a key:

- `fast_page` finds those with a few scans of the bytes in C (regular expressions, counts,
  one `translate`: ~2.4 ms a 1,000-key page on the 2-core machine), only for the shape every
  S3 server writes: an unprefixed `ListBucketResult` root, no namespace prefixes, UTF-8, no
  CDATA, comments, carriage returns or control characters, as many Key, Size and ETag
  elements as Contents, each written plainly (no attributes, no `<Key/>`), the paging fields
  written once and plainly, and a KeyCount (when given) that matches. Anything else returns
  None. It counts elements; it does not check where they nest (a Key beside its Contents and
  a Contents without one would be read by position: no server writes that);
- `tree_page` then parses the page with ElementTree: any well-formed document, and it tells an
  error document or a cut-off page apart.

Both give the text as the XML says it; `url_decoded` then undoes S3's `EncodingType=url`
(s3_lister asks for it, as botocore does on every listing, so that keys with characters XML
cannot carry list).
tests/test_s3_list_page.py holds the two parses equal on generated pages (hypothesis), and the
storage tests list through the fast path on moto, SeaweedFS and Ceph RGW."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, unquote_plus

import pyarrow as pa
import pyarrow.compute as pc

_ROOT = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?<ListBucketResult[\s>]")
_ENCODING = re.compile(rb"encoding\s*=\s*[\"']([^\"']*)[\"']")


def _element(name: bytes) -> re.Pattern[bytes]:
    """Each `<name>text</name>` (group 1), and any other tag of that name, however written
    (`<name/>`, `<name a="">`, text with markup in it: group 2 not empty); not `<nameCount>`."""
    return re.compile(rb"<%s(?:>([^<]*)</%s>|([\s/>]))" % (name, name))


_KEYS, _SIZES, _ETAGS = _element(b"Key"), _element(b"Size"), _element(b"ETag")
# The paging fields listing reads: `<Name>text</Name>` or `<Name/>` (empty), else group 3.
_TOP = re.compile(rb"<(IsTruncated|NextContinuationToken|KeyCount|EncodingType)(?:>([^<]*)</\1>|\s*/>|([\s/>]))")
_ODD_MARKUP = re.compile(rb"<[!?]")  # CDATA, a comment, a processing instruction
_XML_PLAIN = bytes(b for b in range(256) if b >= 0x20 or b in (0x09, 0x0A))  # all but "\r" and control characters
# All but "\r", control characters, "!" and "?": what `translate` leaves of a page is then short,
# and tells in the same pass whether markup that starts "<!" or "<?" could be in it.
_COMMON = _XML_PLAIN.translate(None, b"!?")
_PREFIXES = re.compile(rb"<CommonPrefixes>\s*<Prefix>([^<]*)</Prefix>\s*</CommonPrefixes>")
_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);")
_BARE_AMPERSAND = re.compile(r"&(?!#x[0-9a-fA-F]+;|#[0-9]+;|amp;|lt;|gt;|quot;|apos;)")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


@dataclass(frozen=True, eq=False)
class ListPage:
    """What listing reads of one page: each Contents' Key, Size and ETag as columns, the common
    prefixes, and the paging fields."""

    keys: pa.Array  # string
    sizes: pa.Array  # int64
    etags: pa.Array  # string, as listed (quotes and all)
    prefixes: tuple[str, ...]
    truncated: bool
    next_token: str | None
    key_count: int | None
    url_encoded: bool  # EncodingType "url": keys and prefixes percent-encoded (`url_decoded`)

    def rows(self) -> tuple[Any, ...]:
        """Every field as plain Python values: for comparing two parses."""
        return (self.keys.to_pylist(), self.sizes.to_pylist(), self.etags.to_pylist(), self.prefixes, self.truncated, self.next_token, self.key_count, self.url_encoded)

    def url_decoded(self) -> ListPage:
        """The page with S3's URL encoding undone (`unquote_plus`, as botocore decodes it): a
        key with no "%" only needs "+" read as a space, done in Arrow; the others, one by one, in
        Python."""
        if not self.url_encoded:
            return self
        keys = pc.replace_substring(self.keys, "+", " ")  # unquote_plus reads "+" first, then "%XX"
        percent = pc.match_substring(keys, "%")
        if pc.any(percent).as_py():  # only those keys through Python (real S3 encodes "é", "(", ",")
            decoded = [unquote(k) for k in pc.filter(keys, percent).to_pylist()]
            keys = pc.replace_with_mask(keys, percent, pa.array(decoded, pa.string()))
        return replace(self, keys=keys, prefixes=tuple(unquote_plus(p) for p in self.prefixes), url_encoded=False)


class _NotFast(Exception):
    """The page is not of the shape `fast_page` reads."""


def _xml_char(code: int) -> bool:
    return code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.startswith("#"):
        code = int(name[2:], 16) if name.startswith("#x") else int(name[1:])
        if not _xml_char(code):
            raise _NotFast  # a reference to a character XML forbids: the parser refuses it
        return chr(code)
    return _NAMED[name]


def _text(raw: bytes) -> str:
    """An element's text as an XML parser reads it: UTF-8, the five entities and character
    references replaced; any other `&` is not for the fast path."""
    text = raw.decode("utf-8")
    if "&" not in text:
        return text
    if _BARE_AMPERSAND.search(text):
        raise _NotFast  # an unknown entity or a bare "&": the XML parser decides (it refuses them)
    return _ENTITY.sub(_entity, text)


def _texts(raw: list[bytes], joined: bytes | None = None) -> pa.Array:
    """Element texts as a string column: UTF-8 checked by Arrow; only when one has an entity
    do they go through `_text`. (`joined`: the texts joined with NUL, when the caller has it.)"""
    if joined is None:
        joined = b"\0".join(raw)
    if b"&" in joined:  # one scan; no text holds a NUL (a control character: not fast)
        return pa.array([_text(r) for r in raw], pa.string())
    return pa.array(raw, pa.binary()).cast(pa.string())  # ArrowInvalid on bytes that are not UTF-8


def _plain_texts(pattern: re.Pattern[bytes], body: bytes) -> list[bytes]:
    """The texts of an element written plainly everywhere in the page; `_NotFast` otherwise.
    (Split with `zip` and checked with `any` over a tuple: C loops, no Python frame a key.)"""
    found = pattern.findall(body)
    if not found:
        return []
    texts, others = zip(*found)
    if any(others):
        raise _NotFast
    return list(texts)


def _fields(body: bytes) -> dict[bytes, bytes]:
    """The paging fields, each written once and plainly; `_NotFast` otherwise: a paging field
    written another way would go unread, and a page read as the last drops the rest."""
    found = _TOP.findall(body)
    fields = {name: text for name, text, other in found}
    if len(fields) != len(found) or any(other for _, _, other in found):
        raise _NotFast
    return fields


def _plain_markup(body: bytes) -> bool:
    """No CDATA, comment, second processing instruction, namespace prefix, carriage return or
    control character: the things an XML parser reads otherwise than a scan for `<Key>` would."""
    if not _ROOT.match(body) or not body.rstrip().endswith(b"</ListBucketResult>"):
        return False
    # (`_ROOT` matched: a page that starts with a declaration has it up to its first ">".)
    declaration = body[: body.index(b">") + 1] if body.startswith(b"<?xml") else b""
    rare = body.translate(None, _COMMON)  # one pass: every "!", "?", "\r" and control character
    if rare.translate(None, b"!?"):
        return False  # "\r" (a parser reads "\r\n" as "\n") or a control character
    # "<!" and "<?" (from 2: the declaration's own is `_ROOT`'s) need a "!" or a "?": when the
    # declaration holds every "?" and there is no "!", searching it alone is searching the page.
    everywhere = b"!" in rare or rare.count(b"?") > declaration.count(b"?")
    if _ODD_MARKUP.search(body if everywhere else declaration, 2):
        return False
    if body.count(b"<ListBucketResult") != 1 or b"xmlns:" in body:
        return False
    declared = _ENCODING.search(body[: body.find(b"?>") + 2]) if body.lstrip().startswith(b"<?xml") else None
    return not (declared and declared.group(1).lower() not in (b"utf-8", b"utf8"))


def fast_page(body: bytes) -> ListPage | None:
    """Listing's fields of a ListObjectsV2 page, or None when the page is not of the plain
    shape this reads (see the module's docstring). Same result as `tree_page` otherwise, for a
    well-formed page (one of that shape that is not well-formed, which no server writes, such
    as a stray "<" or bytes that are not UTF-8 between the elements, is read here where the XML
    parser refuses it).

    The scans of the page are C code that holds the interpreter lock (regular expressions,
    `bytes.count`), and a page costs a handful of Arrow calls, which let go of it: with 16
    listing threads each release is a chance for another thread to take the lock, and a parse
    that released it at every step (numpy, a first version) cost more in handovers than it saved."""
    if not _plain_markup(body):
        return None
    try:
        keys, sizes, etags = _plain_texts(_KEYS, body), _plain_texts(_SIZES, body), _plain_texts(_ETAGS, body)
        n = len(keys)
        # One Key, Size and ETag a Contents, each written plainly, and no Contents written another way.
        if not (len(sizes) == len(etags) == n == body.count(b"<Contents")):
            return None
        top = _fields(body)
        key_count = top.get(b"KeyCount")
        common: list[bytes] = []
        if b"<CommonPrefixes" in body:
            common = _PREFIXES.findall(body)
            if len(common) != body.count(b"<CommonPrefixes"):
                return None
        truncated, token, encoding = top.get(b"IsTruncated"), top.get(b"NextContinuationToken"), top.get(b"EncodingType")
        if truncated is not None and truncated.strip(b" \t\n") not in (b"true", b"false"):
            return None  # "&#116;rue", a no-break space: what the XML parser reads, not this
        count = int(key_count) if key_count is not None else None
        if count is not None and count != n + len(common):
            return None  # a server that counts otherwise: read it the slow, sure way
        return ListPage(
            keys=_texts(keys),
            sizes=_sizes(sizes),
            etags=_etags(etags),
            prefixes=tuple(_text(p) for p in common),
            truncated=truncated is not None and truncated.strip(b" \t\n") == b"true",
            next_token=_text(token) if token is not None else None,
            key_count=count,
            url_encoded=encoding is not None and _text(encoding) == "url",
        )
    except (_NotFast, UnicodeDecodeError, ValueError, OverflowError, pa.ArrowInvalid):
        return None


def _etags(raw: list[bytes]) -> pa.Array:
    """ETag texts with their quotes as XML reads them: `&quot;`, or `&#34;` as Go's encoder
    (MinIO, SeaweedFS) writes them, replaced in one pass over them all; without this every
    ETag would take `_text`'s slow path."""
    joined = b"\0".join(raw).replace(b"&quot;", b'"').replace(b"&#34;", b'"').replace(b"&#x22;", b'"')
    texts = joined.split(b"\0") if raw else []
    return _texts(texts, joined)


def _sizes(raw: list[bytes]) -> pa.Array:
    """Sizes as int64, when every one is plain digits (Arrow would also read "0x10" or "+1";
    the XML parse's `int` reads those otherwise, or refuses them: `_NotFast`)."""
    if raw and not b"".join(raw).isdigit():
        raise _NotFast
    return pa.array(raw, pa.binary()).cast(pa.int64())


class NotAListing(Exception):
    """A 200 answer that is a cut-off page, not XML at all, or an error document (S3 sends
    those): to be retried."""


def tree_page(body: bytes) -> ListPage:
    """Listing's fields of a ListObjectsV2 page parsed with ElementTree. Raises NotAListing for
    a cut-off or empty page, an error document or any other document, or a size that is not a
    number: read as a page, each would look like an empty last one."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise NotAListing from None
    if root.tag.rpartition("}")[2] != "ListBucketResult":
        raise NotAListing
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    contents = list(root.iterfind(f"{ns}Contents"))
    top = {element.tag.rpartition("}")[2]: element.text or "" for element in root}
    try:
        sizes = pa.array([int(c.findtext(f"{ns}Size") or 0) for c in contents], pa.int64())
        key_count = int(top["KeyCount"]) if "KeyCount" in top else None
    except (ValueError, OverflowError, pa.ArrowInvalid):
        raise NotAListing from None
    return ListPage(
        keys=pa.array([c.findtext(f"{ns}Key") or "" for c in contents], pa.string()),
        sizes=sizes,
        etags=pa.array([c.findtext(f"{ns}ETag") or "" for c in contents], pa.string()),
        prefixes=tuple(p.findtext(f"{ns}Prefix") or "" for p in root.iterfind(f"{ns}CommonPrefixes")),
        truncated=top.get("IsTruncated", "").strip().lower() == "true",
        next_token=top.get("NextContinuationToken"),
        key_count=key_count,
        url_encoded=top.get("EncodingType") == "url",
    )
