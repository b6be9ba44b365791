"""A small recursive-descent parser for the subset of GraphQL that stash2plex sends to Stash.

Supported: documents made of operations (`query` / `mutation`, optional name, variable definitions
such as `($id: ID!, $ids: [ID!] = [])`) or one anonymous `{ ... }` shorthand query; selection
sets with nested fields, aliases and arguments; values that are variables, strings (with the
standard escapes, including `\\uXXXX`), ints, floats, booleans, null, enums, lists and objects;
commas and `#` comments are ignored as the spec says.

Not supported, each rejected with a `GraphQLError` rather than misparsed: fragments and inline
fragments (`...`), directives (`@include`), subscriptions, block strings (`\"\"\"`).

Validation against a schema is the caller's job; this module checks only what it can see on its
own: syntax, duplicate names, variables that are used but not declared, and (in
`coerce_variables`) required variables that were not provided.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator


class GraphQLError(Exception):
    """A parse or validation failure; `to_dict()` is the entry for a response's `errors` list."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"message": self.message}
        if self.line is not None:
            entry["locations"] = [{"line": self.line, "column": self.column}]
        return entry


# --- AST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """A `$name` reference inside a value."""

    name: str


class EnumValue(str):
    """An unquoted enum literal such as `ASC`; a `str` so it compares equal to its name."""


@dataclass(frozen=True)
class TypeRef:
    """A variable or argument type: a named type, or a list of `of_type`; `non_null` for `!`."""

    name: str | None = None
    of_type: "TypeRef | None" = None
    non_null: bool = False

    @property
    def is_list(self) -> bool:
        return self.of_type is not None

    def __str__(self) -> str:
        inner = f"[{self.of_type}]" if self.of_type is not None else str(self.name)
        return inner + ("!" if self.non_null else "")


@dataclass
class Field:
    """One selected field: `alias: name(arguments) { selections }`; selections None for a leaf."""

    name: str
    alias: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    selections: list["Field"] | None = None
    line: int = 0
    column: int = 0

    @property
    def response_key(self) -> str:
        return self.alias or self.name


@dataclass
class VariableDefinition:
    name: str
    type: TypeRef
    default: Any = None
    has_default: bool = False


@dataclass
class Operation:
    kind: str  # "query" or "mutation"
    name: str | None
    variables: list[VariableDefinition]
    selections: list[Field]


# --- tokens ----------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$&()\:=@\[\]{}|])
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<blockstring>\"\"\")
  | (?P<string>"(?:[^"\\\n\r]|\\.)*")
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    """,
    re.VERBOSE,
)

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)")


@dataclass(frozen=True)
class Token:
    kind: str  # punct, spread, number, string, name, eof
    value: str
    line: int
    column: int


def _unescape(raw: str, line: int, column: int) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        if code in _ESCAPES:
            return _ESCAPES[code]
        raise GraphQLError(f"Invalid character escape sequence: \\{code}", line, column)

    return _ESCAPE_RE.sub(replace, raw[1:-1])


def tokenize(source: str) -> Iterator[Token]:
    """Yield the tokens of `source`, ending with an `eof` token; raise GraphQLError on bad input."""
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        match = _TOKEN_RE.match(source, pos)
        column = pos - line_start + 1
        if match is None:
            if source[pos] == '"':
                raise GraphQLError("Unterminated string", line, column)
            raise GraphQLError(f"Unexpected character {source[pos]!r}", line, column)
        kind, text = match.lastgroup or "", match.group()
        if kind == "blockstring":
            raise GraphQLError("Block strings are not supported by this emulator", line, column)
        if kind == "number" and re.match(r"[_A-Za-z0-9.]", source[match.end() : match.end() + 1]):
            raise GraphQLError(f"Invalid number: {text}{source[match.end()]}", line, column)
        if kind == "string":
            yield Token("string", _unescape(text, line, column), line, column)
        elif kind != "ignored":
            yield Token(kind, text, line, column)
        newlines = [m.end() for m in re.finditer(r"\r\n|\n|\r", text)]
        if newlines:
            line += len(newlines)
            line_start = pos + newlines[-1]
        pos = match.end()
    yield Token("eof", "", line, pos - line_start + 1)


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self._tokens = list(tokenize(source))
        self._pos = 0
        self._used_variables: set[str] = set()

    # token helpers
    @property
    def _tok(self) -> Token:
        return self._tokens[self._pos]

    def _error(self, message: str, token: Token | None = None) -> GraphQLError:
        token = token or self._tok
        return GraphQLError(message, token.line, token.column)

    def _peek(self, kind: str, value: str | None = None) -> bool:
        tok = self._tok
        return tok.kind == kind and (value is None or tok.value == value)

    def _skip(self, kind: str, value: str | None = None) -> bool:
        if self._peek(kind, value):
            self._pos += 1
            return True
        return False

    def _expect(self, kind: str, value: str | None = None) -> Token:
        tok = self._tok
        if not self._peek(kind, value):
            wanted = repr(value) if value is not None else kind
            found = repr(tok.value) if tok.kind != "eof" else "<EOF>"
            raise self._error(f"Expected {wanted}, found {found}")
        self._pos += 1
        return tok

    def _name(self) -> str:
        return self._expect("name").value

    # document
    def document(self) -> list[Operation]:
        operations = [self._definition()]
        while not self._peek("eof"):
            operations.append(self._definition())
        return operations

    def _definition(self) -> Operation:
        if self._peek("punct", "{"):
            return self._operation_body("query", None, [])
        tok = self._tok
        if tok.kind == "name" and tok.value in ("query", "mutation"):
            self._pos += 1
            name = self._name() if self._peek("name") else None
            variables = self._variable_definitions()
            self._reject_directives()
            return self._operation_body(tok.value, name, variables)
        if tok.kind == "name" and tok.value in ("subscription", "fragment"):
            raise self._error(f"{tok.value.capitalize()}s are not supported by this emulator")
        raise self._error(f"Unexpected {tok.value or '<EOF>'!r}")

    def _operation_body(self, kind: str, name: str | None, variables: list[VariableDefinition]) -> Operation:
        self._used_variables = set()
        start = self._tok
        selections = self._selection_set()
        undefined = sorted(self._used_variables - {v.name for v in variables})
        if undefined:
            raise GraphQLError(f'Variable "${undefined[0]}" is not defined', start.line, start.column)
        return Operation(kind, name, variables, selections)

    def _variable_definitions(self) -> list[VariableDefinition]:
        definitions: list[VariableDefinition] = []
        if not self._skip("punct", "("):
            return definitions
        while not self._skip("punct", ")"):
            tok = self._expect("punct", "$")
            name = self._name()
            if any(d.name == name for d in definitions):
                raise self._error(f'There can be only one variable named "${name}"', tok)
            self._expect("punct", ":")
            type_ref = self._type()
            definition = VariableDefinition(name, type_ref)
            if self._skip("punct", "="):
                definition.default, definition.has_default = self._value(const=True), True
            self._reject_directives()
            definitions.append(definition)
        if not definitions:
            raise self._error("Expected a variable definition")
        return definitions

    def _type(self) -> TypeRef:
        if self._skip("punct", "["):
            inner = self._type()
            self._expect("punct", "]")
            type_ref = TypeRef(of_type=inner)
        else:
            type_ref = TypeRef(name=self._name())
        if self._skip("punct", "!"):
            type_ref = TypeRef(type_ref.name, type_ref.of_type, non_null=True)
        return type_ref

    def _selection_set(self) -> list[Field]:
        self._expect("punct", "{")
        selections: list[Field] = []
        while not self._skip("punct", "}"):
            if self._peek("spread"):
                raise self._error("Fragments are not supported by this emulator")
            selections.append(self._field())
        if not selections:
            raise self._error("Expected a field, found '}'", self._tokens[self._pos - 1])
        return selections

    def _field(self) -> Field:
        tok = self._expect("name")
        alias, name = None, tok.value
        if self._skip("punct", ":"):
            alias, name = name, self._name()
        arguments = self._arguments()
        self._reject_directives()
        selections = self._selection_set() if self._peek("punct", "{") else None
        return Field(name, alias, arguments, selections, tok.line, tok.column)

    def _arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        if not self._skip("punct", "("):
            return arguments
        while not self._skip("punct", ")"):
            tok = self._tok
            name = self._name()
            if name in arguments:
                raise self._error(f'There can be only one argument named "{name}"', tok)
            self._expect("punct", ":")
            arguments[name] = self._value(const=False)
        if not arguments:
            raise self._error("Expected an argument, found ')'", self._tokens[self._pos - 1])
        return arguments

    def _reject_directives(self) -> None:
        if self._peek("punct", "@"):
            raise self._error("Directives are not supported by this emulator")

    def _value(self, const: bool) -> Any:
        tok = self._tok
        if tok.kind == "punct" and tok.value == "$":
            if const:
                raise self._error("Variables are not allowed in a default value")
            self._pos += 1
            name = self._name()
            self._used_variables.add(name)
            return Variable(name)
        if tok.kind == "punct" and tok.value == "[":
            return self._list(const)
        if tok.kind == "punct" and tok.value == "{":
            return self._object(const)
        self._pos += 1
        if tok.kind == "string":
            return tok.value
        if tok.kind == "number":
            is_float = any(c in tok.value for c in ".eE")
            return float(tok.value) if is_float else int(tok.value)
        if tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.value, EnumValue(tok.value))
        self._pos -= 1
        raise self._error(f"Unexpected {tok.value or '<EOF>'!r}")

    def _list(self, const: bool) -> list[Any]:
        self._expect("punct", "[")
        items: list[Any] = []
        while not self._skip("punct", "]"):
            items.append(self._value(const))
        return items

    def _object(self, const: bool) -> dict[str, Any]:
        self._expect("punct", "{")
        fields: dict[str, Any] = {}
        while not self._skip("punct", "}"):
            tok = self._tok
            name = self._name()
            if name in fields:
                raise self._error(f'There can be only one input field named "{name}"', tok)
            self._expect("punct", ":")
            fields[name] = self._value(const)
        return fields


def parse(source: str) -> list[Operation]:
    """Parse a document into its operations; raise GraphQLError on anything outside the subset."""
    if not isinstance(source, str) or not source.strip():
        raise GraphQLError("No operation provided")
    return _Parser(source).document()


def parse_type(text: str) -> TypeRef:
    """Parse a type expression such as `[ID!]!` (handy for declaring a schema)."""
    parser = _Parser(text)
    type_ref = parser._type()
    parser._expect("eof")
    return type_ref


def select_operation(operations: list[Operation], operation_name: str | None) -> Operation:
    """Pick the operation to run, as a GraphQL server does from the request's `operationName`."""
    if operation_name:
        for operation in operations:
            if operation.name == operation_name:
                return operation
        raise GraphQLError(f'Unknown operation named "{operation_name}"')
    if len(operations) > 1:
        raise GraphQLError("Must provide operation name if query contains multiple operations")
    return operations[0]


def parse_operation(source: str, operation_name: str | None = None) -> Operation:
    operations = parse(source)
    names = [op.name for op in operations]
    if len(operations) > 1 and (None in names or len(set(names)) != len(names)):
        raise GraphQLError("Each operation in a multi-operation document needs a unique name")
    return select_operation(operations, operation_name)


# --- variables -------------------------------------------------------------------------------

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
"""Stands for a variable that was neither provided nor defaulted: its input field is left out."""


def coerce_variables(operation: Operation, provided: dict[str, Any] | None) -> dict[str, Any]:
    """The values of the operation's variables: provided ones, then defaults; required ones checked.

    Variables that are neither provided nor defaulted are absent from the result, so an input field
    that refers to them is treated as not given (GraphQL's rule), not as null.
    """
    if provided is not None and not isinstance(provided, dict):
        raise GraphQLError("variables must be a JSON object")
    provided = provided or {}
    values: dict[str, Any] = {}
    for definition in operation.variables:
        if definition.name in provided:
            values[definition.name] = provided[definition.name]
        elif definition.has_default:
            values[definition.name] = definition.default
        if definition.type.non_null and values.get(definition.name) is None:
            raise GraphQLError(f'Variable "${definition.name}" of required type "{definition.type}" was not provided.')
    return values


def resolve_value(node: Any, variables: dict[str, Any]) -> Any:
    """Replace variable references in a parsed value; unset variables come back as MISSING."""
    if isinstance(node, Variable):
        return variables.get(node.name, MISSING)
    if isinstance(node, list):
        return [None if (item := resolve_value(v, variables)) is MISSING else item for v in node]
    if isinstance(node, dict):
        resolved = {key: resolve_value(v, variables) for key, v in node.items()}
        return {key: v for key, v in resolved.items() if v is not MISSING}
    return node


def resolve_arguments(field_node: Field, variables: dict[str, Any]) -> dict[str, Any]:
    """A field's arguments with variables substituted; arguments bound to unset variables dropped."""
    resolved = {name: resolve_value(value, variables) for name, value in field_node.arguments.items()}
    return {name: value for name, value in resolved.items() if value is not MISSING}
