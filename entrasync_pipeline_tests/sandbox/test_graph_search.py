"""Graph's ``$search`` syntax and matching (graph_search.py), from the examples of
search-query-parameter.md ("Using $search on directory object collections")."""

from __future__ import annotations

import pytest

from entrasync_pipeline.sandbox.graph_search import (
    SearchSyntaxError,
    UnknownSearchProperty,
    compile_search,
    tokens,
)

KNOWN = {"displayName", "description", "mail", "otherMails"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello world", ["hello", "world"]),
        ("HelloWorld", ["hello", "world"]),
        ("helloWORLD", ["hello", "world"]),
        ("HELLOworld", ["helloworld"]),
        ("HelloWORld", ["hello", "world"]),
        ("hello.world", ["hello", ".", "world", "helloworld"]),
        ("hello123world", ["hello", "123", "world"]),
        ("李四(David Li)", ["李四", "(", "david", "李四david", "li", ")"]),
    ],
    ids=["spaces", "camel", "lower-upper", "upper-lower", "two-changes", "symbol", "digits", "cjk"],
)
def test_tokens_follow_the_documented_examples(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("search", "obj", "matches"),
    [
        ('"displayName:OneVideo"', {"displayName": "One Video Team"}, True),
        ('"displayName:OneVideo"', {"displayName": "Video One"}, True),
        ('"displayName:wa"', {"displayName": "Oscar Ward"}, True),
        ('"displayName:ar"', {"displayName": "Oscar Ward"}, False),
        ('"displayName:helloworld"', {"displayName": "hello-world"}, True),
        ('"displayName:Li 李"', {"displayName": "李四(David Li)"}, True),
        ('"mail:onevideo"', {"mail": "OneVideo@contoso.com"}, True),
        ('"mail:video"', {"mail": "OneVideo@contoso.com"}, False),
        ('"otherMails:b@"', {"otherMails": ["a@x.example", "b@y.example"]}, True),
        ('"displayName:x"', {"displayName": None}, False),
        ('"displayName:say \\"hi\\""', {"displayName": 'Say "Hi"'}, True),
    ],
    ids=[
        "tokens-any-order",
        "tokens-reordered",
        "word-prefix",
        "no-contains",
        "symbol-joined",
        "cjk",
        "startswith-other-properties",
        "startswith-not-contains",
        "collection",
        "null",
        "escaped-quote",
    ],
)
def test_clauses_match_as_documented(search: str, obj: dict, matches: bool) -> None:
    assert compile_search(search, KNOWN)(obj) is matches


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    obj = {"displayName": "Video", "description": "Drive"}
    assert compile_search('"description:One" AND "displayName:Video" OR "displayName:Video"', KNOWN)(obj)
    assert not compile_search('"description:One" AND ("displayName:Video" OR "displayName:Drive")', KNOWN)(obj)
    assert compile_search('"description:Dr" AND ("displayName:Audio" OR "displayName:Vid")', KNOWN)(obj)


@pytest.mark.parametrize(
    "search",
    ["displayName:x", '"displayName:x" and "mail:y"', '("displayName:x"', '"displayName:x")', '"x"', '"mail:', ""],
    ids=[
        "unquoted",
        "lower-case-operator",
        "open-parenthesis",
        "close-parenthesis",
        "no-colon",
        "unterminated",
        "empty",
    ],
)
def test_malformed_expressions_are_syntax_errors(search: str) -> None:
    with pytest.raises(SearchSyntaxError):
        compile_search(search, KNOWN)


def test_an_unknown_property_is_named() -> None:
    with pytest.raises(UnknownSearchProperty) as caught:
        compile_search('"displayName:a" OR "shoeSize:42"', KNOWN)
    assert caught.value.prop == "shoeSize"
