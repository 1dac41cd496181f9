"""A ListObjectsV2 page read for listing: the fast parse (regular expressions over the bytes)
gives exactly what the XML parse gives, or steps aside; real servers' pages take the fast path
(and accept the lister's own signatures).
(An error or a cut-off page in a 200 answer: tests/test_s3_lister.py.)"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colorize_core.storage import s3_list_page
from colorize_core.storage.s3 import S3Store
from colorize_core.storage.s3_list_page import fast_page, tree_page
from colorize_core.storage.s3_signer import QuerySigner

NS = "http://s3.amazonaws.com/doc/2006-03-01/"

# Characters XML 1.0 can carry, less "\r" (a parser turns "\r\n" into "\n"; S3 writes none).
xml_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r\ufffe\uffff").filter(lambda c: c in "\t\n" or ord(c) >= 0x20),
    min_size=1,
    max_size=12,
)


def escape(text: str, refs: bool) -> str:
    """XML text as servers write it; `refs`: characters outside ASCII (and some inside) as
    numeric character references, decimal and hex in turn."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    if refs:
        out = "".join(f"&#{ord(c)};" if ord(c) > 126 and ord(c) % 2 else f"&#x{ord(c):x};" if ord(c) > 126 or c == "'" else c for c in out)
    return out


@st.composite
def pages(draw: st.DrawFn) -> tuple[bytes, bool]:
    """(a ListObjectsV2 page in one of the shapes servers write, whether it is plain: the
    shape the fast parse must take)."""
    keys = draw(st.lists(xml_text, max_size=6))
    prefixes = draw(st.lists(xml_text, max_size=3))
    refs = draw(st.booleans())
    pretty = draw(st.sampled_from(["", "\n  ", "\n\t "]))
    namespace = draw(st.booleans())
    count = draw(st.sampled_from(["right", "absent", "wrong"]))
    extras = draw(st.booleans())
    order = draw(st.permutations(["Key", "Size", "ETag", "LastModified", "StorageClass"]))
    truncated = draw(st.booleans())
    prefix = draw(st.sampled_from(["<Prefix/>", "<Prefix></Prefix>", f"<Prefix>{escape(draw(xml_text), refs)}</Prefix>"]))  # moto: <Prefix/>
    top = ["<Name>bucket</Name>", prefix, "<MaxKeys>1000</MaxKeys>", "<EncodingType>url</EncodingType>"]
    if count != "absent":
        top.append(f"<KeyCount>{len(keys) + len(prefixes) + (count == 'wrong')}</KeyCount>")
    top.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if truncated:
        top.append(f"<NextContinuationToken>{escape(draw(xml_text), refs)}</NextContinuationToken>")
    if draw(st.booleans()):
        top.append(f"<ContinuationToken>{escape(draw(xml_text), refs)}</ContinuationToken>")
    top = draw(st.permutations(top))
    quote = draw(st.sampled_from(["&quot;", "&#34;", '"']))  # AWS's, Go's encoder's (MinIO, SeaweedFS), plain
    contents = []
    for key in keys:
        fields = {
            "Key": escape(key, refs),
            "Size": str(draw(st.integers(0, 2**40))),
            "ETag": quote + draw(st.text("0123456789abcdef", min_size=32, max_size=32)) + quote,
            "LastModified": "2026-12-01T00:00:00.000Z",
            "StorageClass": "STANDARD",
        }
        inner = pretty.join(f"<{name}>{fields[name]}</{name}>" for name in order)
        if extras:
            inner += f"<Owner><ID>{escape(draw(xml_text), refs)}</ID><DisplayName>x</DisplayName></Owner><ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"
        contents.append(f"<Contents>{inner}</Contents>")
    common = [f"<CommonPrefixes>{pretty}<Prefix>{escape(p, refs)}</Prefix>{pretty}</CommonPrefixes>" for p in prefixes]
    body = pretty.join([*top, *contents, *common])
    root = f'<ListBucketResult xmlns="{NS}">' if namespace else "<ListBucketResult>"
    declaration = draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>\n', "<?xml version='1.0'?>", ""]))
    return f"{declaration}{root}{pretty}{body}{pretty}</ListBucketResult>{pretty}".encode(), count != "wrong"


@settings(max_examples=60, deadline=None)  # more in a one-off run: no difference found at 2,000
@given(pages())
def test_the_fast_parse_equals_the_xml_parse_and_takes_every_plain_page(page: tuple[bytes, bool]) -> None:
    body, plain = page
    tree = tree_page(body)
    fast = fast_page(body)
    assert (fast is not None) == plain, body  # not plain here: a KeyCount that disagrees
    if fast is not None:
        assert fast.rows() == tree.rows()


@pytest.mark.parametrize(
    "body",
    [
        # A namespace prefix: the fast parse would see no Contents at all, a short listing.
        f'<s3:ListBucketResult xmlns:s3="{NS}"><s3:KeyCount>1</s3:KeyCount><s3:Contents><s3:Key>a.jpg</s3:Key><s3:Size>1</s3:Size><s3:ETag>e</s3:ETag></s3:Contents></s3:ListBucketResult>',
        "<ListBucketResult><Contents><Key/><Size>1</Size><ETag>e</ETag></Contents><Contents><Key>b</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        "<ListBucketResult><Contents><Key><![CDATA[a<b.jpg]]></Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        "<ListBucketResult><!-- a note --><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        # A processing instruction after the declaration: its "?" are more than the declaration's.
        '<?xml version="1.0"?><ListBucketResult><?note x?><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>',
        "<ListBucketResult><Contents><Key>a&#x1;.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        # Paging written another way: read as a last page, the rest of the listing would be lost.
        '<ListBucketResult><IsTruncated x="1">true</IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>',
        "<ListBucketResult><IsTruncated>true</IsTruncated ><NextContinuationToken>t</NextContinuationToken><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        "<ListBucketResult><IsTruncated>&#116;rue</IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>",
        f'<ListBucketResult xmlns:s3="{NS}"><s3:IsTruncated>true</s3:IsTruncated><NextContinuationToken>t</NextContinuationToken><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>',
        f'<ListBucketResult xmlns:s3="{NS}"><s3:Contents><s3:Key>b</s3:Key><s3:Size>1</s3:Size><s3:ETag>e</s3:ETag></s3:Contents><Contents><Key>a.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>',
        '<?xml version="1.0" encoding="ISO-8859-1"?><ListBucketResult><Contents><Key>caf\xe9.jpg</Key><Size>1</Size><ETag>e</ETag></Contents></ListBucketResult>',
    ],
)
def test_pages_of_another_shape_are_left_to_the_xml_parser(body: str) -> None:
    raw = body.encode("latin-1") if "ISO-8859-1" in body else body.encode()
    assert fast_page(raw) is None
    if "&#x1;" in body:
        return  # not XML at all: the parser refuses it (and the page is retried, below)
    parsed = tree_page(raw)
    assert parsed.keys.to_pylist()[-1] == ("café.jpg" if "ISO" in body else "a<b.jpg" if "CDATA" in body else "a.jpg" if "a.jpg" in body else "b")
    if "IsTruncated" in body and "s3:IsTruncated" not in body:
        assert parsed.truncated is True  # the parser reads what the fast parse could not


def test_real_servers_pages_take_the_fast_path(s3_on: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server's own pages (their field order, Owner, KeyCount, EncodingType, prefixes):
    read with the XML parser out of the way, the listing is complete and right."""
    _server, bucket = s3_on
    store = S3Store(bucket)
    keys = sorted(["a b/c&d.jpg", "a b/x+y.jpg", "ü/é'\".png", "top.jpg", "z/1.tif", "z/2/3.tif"], key=lambda k: k.encode())
    for i, key in enumerate(keys):
        store.write(key, b"x" * i)

    def no_tree(body: bytes) -> None:
        raise AssertionError(f"a page of this server's did not take the fast path: {body[:300]!r}")

    monkeypatch.setattr(s3_list_page, "tree_page", no_tree)
    # The requests after each listing's first are signed by the lister's own signer
    # (s3_signer), and the server checks the signatures (SeaweedFS and Ceph RGW do).
    signed = []
    url = QuerySigner.url
    monkeypatch.setattr(QuerySigner, "url", lambda self, params, now=None: signed.append(params) or url(self, params, now))
    store.page_size = 2  # several pages, continuation tokens
    for concurrency in (1, 4):
        store.list_concurrency = concurrency
        assert [(o.key, o.size) for o in store.list()] == [(k, i) for i, k in enumerate(keys)]
    assert any("ContinuationToken" in params for params in signed) and any("Delimiter" in params for params in signed)
