"""The local server's reading of an upload form (multipart/form-data), as S3 reads a presigned POST."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.local.files import MalformedForm, parse_form
from tests.helpers import upload_form

BROWSER_FORM = (
    b"------WebKitFormBoundaryW0DET1iaBMeAOBg3\r\n"
    b'Content-Disposition: form-data; name="key"\r\n\r\n'
    b"users/a/b\r\n"
    b"------WebKitFormBoundaryW0DET1iaBMeAOBg3\r\n"
    b'Content-Disposition: form-data; name="Content-Type"\r\n\r\n'
    b"text/plain\r\n"
    b"------WebKitFormBoundaryW0DET1iaBMeAOBg3\r\n"
    b'Content-Disposition: form-data; name="file"; filename="r\xc3\xa9sum\xc3\xa9.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"line one\r\n--line two\r\n\r\n"
    b"------WebKitFormBoundaryW0DET1iaBMeAOBg3\r\n"
    b'Content-Disposition: form-data; name="after"\r\n\r\n'
    b"ignored\r\n"
    b"------WebKitFormBoundaryW0DET1iaBMeAOBg3--\r\n"
)
BROWSER_TYPE = "multipart/form-data; boundary=----WebKitFormBoundaryW0DET1iaBMeAOBg3"


def test_a_browsers_form_gives_its_fields_by_lowercase_name_and_the_file_whole_when_parts_follow_the_file():
    fields, data = parse_form(BROWSER_TYPE, BROWSER_FORM)
    assert fields == {"key": "users/a/b", "content-type": "text/plain"}  # "after" follows the file: ignored, as S3
    assert data == b"line one\r\n--line two\r\n"


def test_a_preamble_and_a_quoted_boundary_are_read_as_rfc_2046_says():
    quoted = 'multipart/form-data; boundary="----WebKitFormBoundaryW0DET1iaBMeAOBg3"'
    assert parse_form(quoted, b"a preamble\r\n" + BROWSER_FORM) == parse_form(BROWSER_TYPE, BROWSER_FORM)


@given(st.binary(max_size=2048), st.dictionaries(st.sampled_from(["key", "policy", "x"]), st.text(max_size=40)))
def test_the_file_arrives_byte_for_byte_whatever_it_holds(data, fields):
    content_type, body = upload_form(fields, data)
    assert parse_form(content_type, body) == ({name.lower(): value for name, value in fields.items()}, data)


def test_a_form_without_a_file_reads_as_no_file():
    content_type, body = upload_form({"key": "k"}, b"")
    boundary = content_type.split("boundary=")[1]
    fields_only = body.split(b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="file"')[0]
    assert parse_form(content_type, fields_only + f"--{boundary}--\r\n".encode()) == ({"key": "k"}, None)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", BROWSER_FORM),
        ("multipart/form-data", BROWSER_FORM),  # no boundary
        (BROWSER_TYPE, BROWSER_FORM[: len(BROWSER_FORM) // 2]),  # cut short
        (BROWSER_TYPE, b"no boundary at all"),
        (BROWSER_TYPE, BROWSER_FORM.replace(b"form-data; name", b"attachment; name", 1)),
        (BROWSER_TYPE, BROWSER_FORM.replace(b'name="Content-Type"', b'name="KEY"')),  # a field twice
        (BROWSER_TYPE, BROWSER_FORM.replace(b"users/a/b", b"\xff")),  # not UTF-8
    ],
)
def test_a_body_that_is_not_a_well_formed_form_is_malformed(content_type, body):
    with pytest.raises(MalformedForm):
        parse_form(content_type, body)
