"""Istio's authorization matcher tests (istio/istio@1.28.0 pilot/pkg/security/authz/matcher/*_test.go), as what each
pattern matches. Each Istio case says which Envoy matcher a pattern becomes (exact, prefix, suffix, present, regex `.+`,
uri template); here each is held to values that matcher accepts and values it refuses, through the functions the
trace matches AuthorizationPolicy fields with (analysis/policies.py). The same at istio/istio@1.24.6."""

from __future__ import annotations

import pytest

from analysis.policies import Request, _host_matches, header_matches, path_matches, string_matches

# header_test.go TestHeaderMatcher (26-87): exact, suffix (a leading `*`; a trailing `*` then is literal), prefix, present.
HEADER = [
    ("exact match", "/productpage", [("/productpage", True), ("/productpage/", False), ("/Productpage", False)]),
    ("suffix match", "*/productpage*", [("/a/productpage*", True), ("/a/productpage", False), ("/a/productpage/x", False)]),
    ("prefix match", "/productpage*", [("/productpage/x", True), ("/productpage", True), ("/product", False)]),
    ("* match", "*", [("", True), ("anything", True), (None, False)]),
]


@pytest.mark.parametrize(("name", "pattern", "samples"), HEADER, ids=[case[0] for case in HEADER])
def test_header_patterns_as_istio_header_matcher(name, pattern, samples):
    for value, want in samples:
        assert header_matches(pattern, value) is want, (name, value)


# header_test.go TestHostMatcher (89-150): as the header matcher, but ignoring case.
HOST = [
    ("present match", "*", [("example.com", True), ("", False)]),
    ("suffix match", "*.example.com", [("www.EXAMPLE.com", True), ("example.com", False)]),
    ("prefix match", "example.*", [("Example.org", True), ("www.example.org", False)]),
    ("exact match", "example.com", [("EXAMPLE.COM", True), ("example.com.", False)]),
]


@pytest.mark.parametrize(("name", "pattern", "samples"), HOST, ids=[case[0] for case in HOST])
def test_host_patterns_as_istio_host_matcher(name, pattern, samples):
    for value, want in samples:
        assert _host_matches(pattern, Request(None, host=value)) is want, (name, value)


# header_test.go TestPathMatcher (152-203): exact, prefix, suffix, and `*` as the regex `.+` (any non-empty path).
PATH = [
    ("exact match", "/productpage", [("/productpage", True), ("/productpage/1", False)]),
    ("prefix match", "/prefix*", [("/prefix/a", True), ("/prefixes", True), ("/pre", False)]),
    ("suffix match", "*suffix", [("/a/suffix", True), ("/suffix/a", False)]),
    ("wildcard match", "*", [("/", True), ("/any/thing", True)]),
]


@pytest.mark.parametrize(("name", "pattern", "samples"), PATH, ids=[case[0] for case in PATH])
def test_path_patterns_as_istio_path_matcher(name, pattern, samples):
    for value, want in samples:
        assert path_matches(pattern, value) is want, (name, value)


# template_test.go TestPathTemplateMatcher (25-70): `{*}` is one path segment, `{**}` any number of them.
TEMPLATE = [
    ("matchOneOnly", "/foo/bar/{*}", [("/foo/bar/x", True), ("/foo/bar/x/y", False), ("/foo/bar/", False)]),
    ("matchAnyOnly", "/foo/{**}/bar", [("/foo/a/bar", True), ("/foo/a/b/c/bar", True), ("/foo/a/baz", False)]),
    ("matchAnyAndOne", "/{*}/foo/{**}/bar", [("/a/foo/b/c/bar", True), ("/a/b/foo/c/bar", False)]),
    ("matchAnyAndMultipleOnes", "/{*}/{*}/foo/{**}/bar", [("/a/b/foo/c/bar", True), ("/a/foo/c/bar", False)]),
]


@pytest.mark.parametrize(("name", "pattern", "samples"), TEMPLATE, ids=[case[0] for case in TEMPLATE])
def test_path_templates_as_istio_path_template_matcher(name, pattern, samples):
    for value, want in samples:
        assert path_matches(pattern, value) is want, (name, value)


# string_test.go TestStringMatcherPrefix, TestStringMatcherSuffix, TestStringMatcherExact (123-240): ignoreCase applies
# where the field is case-insensitive (hosts), not elsewhere.
@pytest.mark.parametrize(("pattern", "value", "ignore_case", "want"), [
    ("foo*", "FOOBAR", True, True), ("bar*", "BARFOO", False, False), ("bar*", "barfoo", False, True),   # prefix1, prefix2
    ("*foo", "XFOO", True, True), ("*bar", "XBAR", False, False), ("*bar", "xbar", False, True),          # suffix1, suffix2
    ("foo", "FOO", True, True), ("bar", "BAR", False, False), ("bar", "bar", False, True),                # exact1, exact2
])
def test_string_patterns_ignore_case_only_where_istio_asks(pattern, value, ignore_case, want):
    assert string_matches(pattern, value, ignore_case=ignore_case) is want
