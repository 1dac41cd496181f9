"""Parsing one S3 ListObjectsV2 page for listing, instead of botocore's parser.

Why: botocore walks every key's fields in Python and parses each LastModified with dateutil,
~70 ms of CPU per 1,000 keys on a 2-core machine, more than a request's 30 ms of latency; even
ElementTree (C) costs 10-20 ms a page (21 ms under a profiler here), since it builds seven
elements a key. A parallel listing
is then bound by the interpreter, not by the store (BENCHMARKS.md, "Listing at scale"). Listing
reads only Key, Size, ETag, the common prefixes and the paging fields, so:

- `fast_page` finds those with a few regular-expression scans of the bytes (~1.5-2 ms a page),
  and only for the shape every S3 server writes: an unprefixed `ListBucketResult` root and no
  prefixed element, UTF-8, no CDATA, comments, carriage returns or control characters, as
  many Key, Size and ETag elements as Contents, every field it reads written plainly (no
  attributes, no `<Key/>`), and a KeyCount (when given) that matches. Anything else returns None;
- `tree_page` then parses the page with ElementTree, as before: any well-formed document, and
  it tells an error document or a cut-off page apart.

tests/test_s3_list_page.py holds the two equal on generated pages (hypothesis), and the storage
tests list through the fast path on moto, SeaweedFS and Ceph RGW."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_ROOT = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?<ListBucketResult[\s>]")
_ENCODING = re.compile(rb"encoding\s*=\s*[\"']([^\"']*)[\"']")
_KEYS = re.compile(rb"<Key>([^<]*)</Key>")
_SIZES = re.compile(rb"<Size>([^<]*)</Size>")
_ETAGS = re.compile(rb"<ETag>([^<]*)</ETag>")
_PREFIXES = re.compile(rb"<CommonPrefixes>\s*<Prefix>([^<]*)</Prefix>\s*</CommonPrefixes>")
_PREFIX = re.compile(rb"<Prefix(?:>([^<]*)</Prefix>|\s*/>)")  # the request's Prefix (maybe empty), and each common prefix's
_ENTITY = re.compile(r"&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);")
_BARE_AMPERSAND = re.compile(r"&(?!#x[0-9a-fA-F]+;|#[0-9]+;|amp;|lt;|gt;|quot;|apos;)")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
# Top-level fields listing reads (and Prefix), each a tag that appears nowhere else in a page.
_TOP_TEXT = ("Name", "EncodingType", "ContinuationToken", "NextContinuationToken", "StartAfter", "Delimiter")
_TOP_INT = ("KeyCount", "MaxKeys")
# `<Name>text</Name>`, or `<Prefix/>` for an empty one (moto writes that).
_TOP = re.compile(rb"<(%s)(?:>([^<]*)</\1>|\s*/>)" % "|".join((*_TOP_TEXT, *_TOP_INT, "IsTruncated")).encode())
# Each element listing relies on, however written (`<Key>`, `<Key/>`, `<Key a="">`; not `<KeyCount>`).
_ELEMENTS = re.compile(rb"<(Contents|Key|Size|ETag|CommonPrefixes|Prefix|%s)[\s/>]" % "|".join((*_TOP_TEXT, *_TOP_INT, "IsTruncated")).encode())
_PREFIXED = re.compile(rb"</?[A-Za-z_][\w.-]*:")  # an element with a namespace prefix (s3:Contents)
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # characters XML 1.0 refuses


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
    if b"&" in raw:
        raw = raw.replace(b"&quot;", b'"')  # every ETag's quotes: the common case, at C speed
    text = raw.decode("utf-8")
    if "&" not in text:
        return text
    if _BARE_AMPERSAND.search(text):
        raise _NotFast  # an unknown entity or a bare "&": the XML parser decides (it refuses them)
    return _ENTITY.sub(_entity, text)


def _top_fields(body: bytes) -> dict[str, bytes]:
    """The top-level fields listing reads, each at most once (twice: not the plain shape)."""
    found: dict[str, bytes] = {}
    for name, raw in _TOP.findall(body):
        if name.decode() in found:
            raise _NotFast
        found[name.decode()] = raw
    return found


def fast_page(body: bytes) -> dict[str, Any] | None:
    """Listing's fields of a ListObjectsV2 page, or None when the page is not of the plain
    shape this reads (see the module's docstring). Same result as `tree_page` otherwise."""
    if not _ROOT.match(body) or not body.rstrip().endswith(b"</ListBucketResult>"):
        return None
    if b"<!" in body or b"\r" in body or body.count(b"<?") > 1 or body.count(b"<ListBucketResult") != 1:
        return None
    if _PREFIXED.search(body) or _CONTROL.search(body):
        return None
    declared = _ENCODING.search(body[: body.find(b"?>") + 2]) if body.lstrip().startswith(b"<?xml") else None
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        return None
    try:
        keys, sizes, etags = _KEYS.findall(body), _SIZES.findall(body), _ETAGS.findall(body)
        common = list(_PREFIXES.finditer(body))
        prefixes = [m.group(1) for m in common]
        inside = {m.start(1) for m in common}
        top_prefix = [m.group(1) or b"" for m in _PREFIX.finditer(body) if m.start(1) not in inside]
        if len(top_prefix) > 1:
            return None
        written = Counter(_ELEMENTS.findall(body))
        n = len(keys)
        # One Key, Size and ETag in each Contents, none written another way (attributes, <Key/>),
        # each CommonPrefixes of the plain shape.
        if not (len(sizes) == len(etags) == n == written[b"Contents"] == written[b"Key"] == written[b"Size"] == written[b"ETag"]):
            return None
        if len(prefixes) != written[b"CommonPrefixes"]:
            return None
        top = _top_fields(body)
        # Every paging field as the plain shape writes it: `<IsTruncated x="1">` or
        # `</IsTruncated >` would go unread, and a page read as the last drops the rest.
        if any(written[name.encode()] != (name in top) for name in (*_TOP_TEXT, *_TOP_INT, "IsTruncated")):
            return None
        if written[b"Prefix"] != len(prefixes) + len(top_prefix):
            return None
        parsed: dict[str, Any] = {}
        for name in _TOP_TEXT:
            if name in top:
                parsed[name] = _text(top[name])
        if top_prefix:
            parsed["Prefix"] = _text(top_prefix[0])
        for name in _TOP_INT:
            if name in top:
                parsed[name] = int(top[name])
        if "IsTruncated" in top:
            parsed["IsTruncated"] = top["IsTruncated"].strip().lower() == b"true"
        if "KeyCount" in parsed and parsed["KeyCount"] != n + len(prefixes):
            return None  # a server that counts otherwise: read it the slow, sure way
        if n:
            parsed["Contents"] = [{"Key": _text(k), "Size": int(s), "ETag": _text(e)} for k, s, e in zip(keys, sizes, etags)]
        if prefixes:
            parsed["CommonPrefixes"] = [{"Prefix": _text(p)} for p in prefixes]
        return parsed
    except (_NotFast, UnicodeDecodeError, ValueError, OverflowError):
        return None


class NotAListing(Exception):
    """A 200 answer that is a cut-off page, not XML at all, or an error document (S3 sends
    those): to be retried."""


def tree_page(body: bytes) -> dict[str, Any] | None:
    """Listing's fields of a ListObjectsV2 page parsed with ElementTree; None for another
    well-formed document (left to botocore). Raises NotAListing for a cut-off or empty page
    and for an error document."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise NotAListing from None
    name = root.tag.rpartition("}")[2]
    if name == "Error":
        raise NotAListing
    if name != "ListBucketResult":
        return None
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    key_tag, size_tag, etag_tag = f"{ns}Key", f"{ns}Size", f"{ns}ETag"
    contents = [
        {"Key": c.findtext(key_tag) or "", "Size": int(c.findtext(size_tag) or 0), "ETag": c.findtext(etag_tag) or ""} for c in root.iterfind(f"{ns}Contents")
    ]
    prefixes = [{"Prefix": p.findtext(f"{ns}Prefix") or ""} for p in root.iterfind(f"{ns}CommonPrefixes")]
    parsed: dict[str, Any] = {}
    for element in root:
        tag = element.tag.rpartition("}")[2]
        if tag == "IsTruncated":
            parsed[tag] = (element.text or "").strip().lower() == "true"
        elif tag in _TOP_INT:
            parsed[tag] = int(element.text or 0)
        elif tag in _TOP_TEXT or tag == "Prefix":
            parsed[tag] = element.text or ""
    if contents:
        parsed["Contents"] = contents
    if prefixes:
        parsed["CommonPrefixes"] = prefixes
    return parsed


def lean_list_page(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """botocore's `before-parse.s3.ListObjectsV2` hook: parse the page here (`fast_page`, else
    `tree_page`) and leave botocore an empty document. botocore still URL-decodes the keys after
    the call (EncodingType). Anything unexpected (another document) is left to botocore."""
    if response_dict.get("status_code") != 200 or not isinstance(response_dict.get("body"), bytes):
        return
    body = response_dict["body"]
    parsed = fast_page(body)
    if parsed is None:
        try:
            parsed = tree_page(body)
        except NotAListing:
            # A cut-off or empty 200 answer, or an error in one: retried, as botocore's own check
            # (unregistered for this client) would; handed on, an empty body would read as a
            # last page and drop the rest.
            response_dict["status_code"] = 500
            return
        if parsed is None:
            return
    customized_response_dict.update(parsed)
    response_dict["body"] = b"<ListBucketResult/>"  # botocore's pass then finds nothing more to do
