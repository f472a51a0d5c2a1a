"""Graph's ``$search`` on directory collections, as search-query-parameter.md ("Using $search on
directory object collections") describes it.

Syntax: one or more clauses ``"property:text"`` in double quotes (a ``"`` or ``\\`` inside escaped
with a backslash), joined by upper-case ``AND``/``OR`` outside the quotes, with parentheses for
precedence (``AND`` binds tighter). Matching: ``displayName`` and ``description`` are tokenized —
words split at spaces, at a change from lower to upper case, between letters and digits, and at
symbols (each symbol is a token, and the words a symbol joins are also one token) — and every
token of the text must start a token of the value, in any order, ignoring case. Any other string
property matches when its value (or, for a collection, one of its values) starts with the text,
ignoring case. The text of a clause is never a "contains" match.

This module only parses and matches; the caller (``graph.py``) refuses ``$search`` without
``ConsistencyLevel: eventual`` and turns ``SearchSyntaxError`` into Graph's 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Collection

TOKENIZED = frozenset({"displayName", "description"})
_WORD = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_")
_CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])")
_ALNUM = re.compile(r"[^\W_]+")

Predicate = Callable[[dict[str, Any]], bool]


class SearchSyntaxError(ValueError):
    """The ``$search`` expression does not follow the documented syntax."""


class UnknownSearchProperty(ValueError):
    """A clause names a property the searched type does not have."""

    def __init__(self, prop: str) -> None:
        super().__init__(prop)
        self.prop = prop


@dataclass(frozen=True)
class _Clause:
    prop: str
    text: str


def tokens(text: str) -> list[str]:
    """The lower-cased tokens Graph extracts from ``text`` (search-query-parameter.md's examples:
    ``HelloWorld`` → hello, world; ``HELLOworld`` → helloworld; ``hello.world`` → hello, ., world,
    helloworld; ``hello123world`` → hello, 123, world)."""
    out: list[str] = []
    for chunk in text.split():
        for part in _WORD.findall(chunk):
            out += _CASE_CHANGE.split(part) if part[0].isalpha() else [part]
        joined = _ALNUM.findall(chunk)
        if len(joined) > 1 and not chunk.isalnum():
            out.append("".join(joined))
    return [t.lower() for t in out if t]


def compile_search(raw: str, known: Collection[str]) -> Predicate:
    """A predicate over directory objects for the ``$search`` value ``raw``.

    Raises ``SearchSyntaxError`` for a malformed expression and ``UnknownSearchProperty`` for a
    clause on a property outside ``known``.
    """
    parser = _Parser(_lex(raw))
    tree = parser.expression()
    if not parser.done():
        raise SearchSyntaxError(raw)
    for clause in _clauses(tree):
        if clause.prop not in known:
            raise UnknownSearchProperty(clause.prop)
    return lambda obj: _evaluate(tree, obj)


def _lex(raw: str) -> list[Any]:
    """Clauses, ``AND``, ``OR``, ``(`` and ``)``; anything else is a syntax error."""
    items: list[Any] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char.isspace():
            i += 1
        elif char in "()":
            items.append(char)
            i += 1
        elif char == '"':
            text, i = _quoted(raw, i + 1)
            prop, colon, value = text.partition(":")
            if not colon or not prop.strip() or not value.strip():
                raise SearchSyntaxError(raw)
            items.append(_Clause(prop.strip(), value.strip()))
        elif raw.startswith(("AND", "OR"), i):
            word = "AND" if raw.startswith("AND", i) else "OR"
            items.append(word)
            i += len(word)
        else:
            raise SearchSyntaxError(raw)
    return items


def _quoted(raw: str, start: int) -> tuple[str, int]:
    text: list[str] = []
    i = start
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            text.append(raw[i + 1])
            i += 2
        elif raw[i] == '"':
            return "".join(text), i + 1
        else:
            text.append(raw[i])
            i += 1
    raise SearchSyntaxError(raw)


class _Parser:
    """Recursive descent: expression = term (OR term)*; term = factor (AND factor)*."""

    def __init__(self, items: list[Any]) -> None:
        self.items, self.pos = items, 0

    def done(self) -> bool:
        return self.pos == len(self.items)

    def _peek(self) -> Any:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def expression(self) -> Any:
        node = self.term()
        while self._peek() == "OR":
            self.pos += 1
            node = ("OR", node, self.term())
        return node

    def term(self) -> Any:
        node = self.factor()
        while self._peek() == "AND":
            self.pos += 1
            node = ("AND", node, self.factor())
        return node

    def factor(self) -> Any:
        item = self._peek()
        self.pos += 1
        if isinstance(item, _Clause):
            return item
        if item == "(":
            node = self.expression()
            if self._peek() != ")":
                raise SearchSyntaxError("unbalanced parentheses")
            self.pos += 1
            return node
        raise SearchSyntaxError("a clause was expected")


def _clauses(node: Any) -> list[_Clause]:
    if isinstance(node, _Clause):
        return [node]
    return _clauses(node[1]) + _clauses(node[2])


def _evaluate(node: Any, obj: dict[str, Any]) -> bool:
    if isinstance(node, _Clause):
        return _matches(node, obj.get(node.prop))
    if node[0] == "AND":
        return _evaluate(node[1], obj) and _evaluate(node[2], obj)
    return _evaluate(node[1], obj) or _evaluate(node[2], obj)


def _matches(clause: _Clause, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    texts = [v for v in values if isinstance(v, str)]
    if clause.prop in TOKENIZED:
        wanted = tokens(clause.text)
        return any(all(any(t.startswith(w) for t in tokens(v)) for w in wanted) for v in texts)
    return any(v.lower().startswith(clause.text.lower()) for v in texts)
