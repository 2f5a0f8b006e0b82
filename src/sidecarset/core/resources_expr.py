"""Kubernetes resource quantities and the `resourcesPolicy` expression language.

Quantities follow apimachinery's `resource.Quantity` exactly where bytes matter: parsing, the
milli round-up that defaulting applies to limits and requests, and the JSON form Go writes
(which keeps the user's spelling when Go considers it canonical). The hash, defaulting and
validation use them. Expressions such as `max(cpu*50%, 50m)` are parsed with the grammar of
Kruise's calculator (`+ - * /`, parentheses, unary minus, `max`/`min` of two arguments, numbers,
percentages, quantities, the variables `cpu` and `memory`) and evaluated with its arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction

import msgspec

__all__ = [
    "Expression",
    "ExpressionError",
    "Quantity",
    "QuantityError",
    "QuantityFormat",
    "go_float_text",
    "parse_expression",
    "parse_quantity",
    "quantity_from_json",
]

_MAX_INT64 = (1 << 63) - 1
_MAX_EXPONENT = 1000
"""Go keeps `1e999999` as a scaled decimal; we refuse exponents this large (no real resource
needs them) rather than materialise the number."""
_NANO = -9
_MILLI = -3


class QuantityError(ValueError):
    """A string that Kubernetes would refuse as a quantity."""


class QuantityFormat(StrEnum):
    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12}
_DECIMAL_SUFFIXES |= {"P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {e: s for s, e in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")


class Quantity(msgspec.Struct, frozen=True, kw_only=True):
    """An exact quantity, its format, and the spelling Go would keep when writing it back.

    `value` is in base units (cores, bytes). `spelling` is set when apimachinery caches the
    input string because it is already canonical; `int_scale` is the decimal scale of Go's
    int64 fast path (None for its arbitrary-precision path), which decides whether rounding to
    milli-units drops that spelling.
    """

    value: Fraction
    format: QuantityFormat
    spelling: str | None = None
    int_scale: int | None = None

    def to_json(self) -> str:
        """The string Go's `Quantity.MarshalJSON` writes (without quotes)."""
        if self.spelling:
            return self.spelling
        return _canonical(self.value, self.format)

    def round_up_milli(self) -> Quantity:
        """Round away from zero to milli precision, as `SetDefaults_ResourceList` does."""
        if self.int_scale is not None and self.int_scale >= _MILLI:
            return self
        return Quantity(value=_round_away(self.value, _MILLI), format=self.format, int_scale=_MILLI)

    def milli_value(self) -> int:
        """ceil(value * 1000), as `Quantity.MilliValue` computes it."""
        return math.ceil(self.value * 1000)

    @classmethod
    def from_milli(cls, milli: int, fmt: QuantityFormat = QuantityFormat.DECIMAL_SI) -> Quantity:
        return cls(value=Fraction(milli, 1000), format=fmt, int_scale=_MILLI)


def quantity_from_json(raw: object) -> Quantity:
    """Decode a quantity as Go's `UnmarshalJSON` would: a string (trimmed) or a JSON number."""
    if isinstance(raw, bool) or raw is None:
        raise QuantityError(f"quantities must be strings or numbers, got {raw!r}")
    if isinstance(raw, int):
        return parse_quantity(str(raw))
    if isinstance(raw, float):
        return parse_quantity(go_float_text(raw))
    if isinstance(raw, str):
        return parse_quantity(raw.strip())
    raise QuantityError(f"quantities must be strings or numbers, got {type(raw).__name__}")


def parse_quantity(text: str) -> Quantity:
    """Parse like `resource.ParseQuantity`, including its caching and rounding rules.

    Raises `QuantityError` for anything Kubernetes rejects. Non-zero values are rounded away
    from zero to nano precision.
    """
    if not text:
        raise QuantityError("quantity is empty")
    if text == "0":
        return Quantity(value=Fraction(0), format=QuantityFormat.DECIMAL_SI, spelling="0")
    positive, value, num, denom, suffix = _scan(text)
    base, exponent, fmt = _interpret(suffix)
    if abs(exponent) > _MAX_EXPONENT:
        raise QuantityError(f"quantity {text!r} is out of range")

    precision = 0
    scale = 0
    mantissa = 1
    if fmt is QuantityFormat.BINARY_SI:
        if exponent >= 0 and not denom:
            mantissa = 1 << exponent
            precision = 15 - len(num) - (exponent * 3) // 10 - 1
        else:
            precision = -1
    else:
        scale = exponent
        precision = 18 - (len(num) + len(denom))

    if precision >= 0:
        scale -= len(denom)
        if scale >= _NANO:
            shifted = num + denom
            parsed = int(shifted)
            result = parsed * mantissa
            if result <= _MAX_INT64:
                if not positive:
                    result = -result
                amount = Fraction(result) * Fraction(10) ** scale
                if fmt is QuantityFormat.BINARY_SI:
                    cached = exponent % 10 == 0 and parsed & 0x07 != 0
                else:
                    cached = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
                return Quantity(
                    value=amount, format=fmt, spelling=text if cached else None, int_scale=scale
                )

    try:
        amount = Fraction(Decimal(value))
    except (InvalidOperation, ValueError) as exc:
        raise QuantityError(f"unable to parse numeric part of quantity {text!r}") from exc
    amount *= Fraction(base) ** exponent
    negative = amount < 0
    amount = abs(amount)
    if amount != 0:
        amount = _round_away(amount, _NANO)
    if fmt is QuantityFormat.BINARY_SI and amount > _MAX_INT64:
        amount = Fraction(_MAX_INT64)
    if fmt is QuantityFormat.BINARY_SI and 0 < amount < 1:
        fmt = QuantityFormat.DECIMAL_SI
    return Quantity(value=-amount if negative else amount, format=fmt)


def _scan(text: str) -> tuple[bool, str, str, str, str]:
    """apimachinery's parseQuantityString: sign, numeric text, integer digits, fraction, suffix."""
    positive = True
    pos = 0
    end = len(text)
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    if pos >= end:
        return positive, text, num, "", ""
    denom = ""
    if text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
        if pos >= end:
            return positive, text, num, denom, ""
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(
            f"quantities must match '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$', got {text!r}"
        )
    return positive, value, num, denom, text[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, QuantityFormat]:
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], QuantityFormat.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], QuantityFormat.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[0] in "+-" else digits
        if body and all(c in _DIGITS for c in body):
            exponent = int(digits)
            if -(1 << 63) <= exponent <= _MAX_INT64:
                # Go truncates the parsed int64 to int32 here.
                exponent = (exponent + (1 << 31)) % (1 << 32) - (1 << 31)
                return 10, exponent, QuantityFormat.DECIMAL_EXPONENT
    raise QuantityError(f"unable to parse quantity's suffix {suffix!r}")


def _round_away(value: Fraction, scale: int) -> Fraction:
    """Round |value| up to a multiple of 10**scale, keeping the sign (inf.RoundUp)."""
    unit = Fraction(10) ** scale
    steps = math.ceil(abs(value) / unit)
    rounded = steps * unit
    return -rounded if value < 0 else rounded


def _canonical(value: Fraction, fmt: QuantityFormat) -> str:
    if value == 0:
        return "0"
    if fmt is QuantityFormat.BINARY_SI:
        if -1024 < value < 1024:
            fmt = QuantityFormat.DECIMAL_SI
        else:
            rounded = _round_away(value, 0)
            if rounded != value:
                fmt = QuantityFormat.DECIMAL_SI
            else:
                amount = int(rounded)
                times = 0
                while amount % 1024 == 0:
                    amount //= 1024
                    times += 1
                return f"{amount}{_BINARY_BY_EXPONENT.get(times * 10, '')}"
    mantissa, exponent = _decimal_parts(value)
    while exponent % 3 != 0:
        mantissa *= 10
        exponent -= 1
    if fmt is QuantityFormat.DECIMAL_EXPONENT:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    # Go prints no suffix for an exponent outside n..E (a quirk kept for byte identity).
    return f"{mantissa}{_DECIMAL_BY_EXPONENT.get(exponent, '')}"


def _decimal_parts(value: Fraction) -> tuple[int, int]:
    """value = mantissa * 10**exponent with no factor of ten left in the mantissa."""
    exponent = 0
    while value.denominator != 1:
        value *= 10
        exponent -= 1
    mantissa = int(value)
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return mantissa, exponent


def go_float_text(value: float) -> str:
    """How Go's encoding/json spells a finite float64 (what the API server sends for `cpu: 0.5`)."""
    if not math.isfinite(value):
        raise QuantityError(f"quantity {value!r} is not a finite number")
    if value == 0:
        return "0"
    shortest = Decimal(repr(value))
    if abs(value) < 1e-6 or abs(value) >= 1e21:
        return format(shortest, "e")
    return format(shortest, "f")


# --- expressions ------------------------------------------------------------------------------


class ExpressionError(ValueError):
    """A resourcesPolicy expression that cannot be parsed or evaluated."""


_QUANTITY_UNITS = frozenset({"m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "Pi"})
_FUNCTIONS = frozenset({"max", "min"})

ExprValue = float | Quantity
"""A plain number (a percentage is already divided by 100) or a quantity."""


class _Token(msgspec.Struct, frozen=True):
    kind: str  # "num", "qty", "ident", "op", "end"
    text: str
    position: int


class _Num(msgspec.Struct, frozen=True):
    value: float


class _Qty(msgspec.Struct, frozen=True):
    value: Quantity


class _Var(msgspec.Struct, frozen=True):
    name: str


class _Neg(msgspec.Struct, frozen=True):
    operand: _Node


class _BinOp(msgspec.Struct, frozen=True):
    op: str
    left: _Node
    right: _Node


class _Call(msgspec.Struct, frozen=True):
    name: str
    args: tuple[_Node, ...]


_Node = _Num | _Qty | _Var | _Neg | _BinOp | _Call


class Expression(msgspec.Struct, frozen=True):
    """A parsed expression; `variables` lists the (lower-case) variable names it reads."""

    text: str
    root: _Node
    variables: frozenset[str]

    def evaluate(self, values: Mapping[str, ExprValue]) -> ExprValue:
        """Evaluate with Kruise's arithmetic; raises ExpressionError on a negative result.

        Quantity × number keeps milli precision, truncating toward zero, and a number meeting a
        quantity becomes milli-units of it, as the calculator does.
        """
        result = _evaluate(self.root, values)
        if (result.value if isinstance(result, Quantity) else result) < 0:
            raise ExpressionError(f"calculation result is negative: {_render(result)}")
        return result


def parse_expression(text: str) -> Expression:
    """Parse an expression; raises ExpressionError with the position of the problem.

    Stricter than Kruise where Kruise silently reads garbage as 0: a number with an unknown
    unit (`10x`) is rejected.
    """
    tokens = _tokenize(text)
    parser = _Parser(tokens)
    root = parser.expression()
    token = parser.peek()
    if token.kind != "end":
        raise ExpressionError(f"unexpected {token.text!r} at column {token.position + 1}")
    return Expression(text=text, root=root, variables=frozenset(_variables(root)))


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            tokens.append(_Token("end", "end of expression", pos))
            return tokens
        ch = text[pos]
        if ch in "+-*/(),":
            tokens.append(_Token("op", ch, pos))
            pos += 1
        elif ch.isdigit() or ch == ".":
            end = _number_end(text, pos)
            word = text[pos:end]
            tokens.append(_Token("qty" if _is_quantity(word) else "num", word, pos))
            pos = end
        elif ch.isalpha():
            end = pos
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            tokens.append(_Token("ident", text[pos:end], pos))
            pos = end
        else:
            raise ExpressionError(f"unexpected character {ch!r} at column {pos + 1}")


def _number_end(text: str, pos: int) -> int:
    seen_dot = seen_e = seen_percent = expect_exp_digit = False
    while pos < len(text):
        ch = text[pos]
        if ch.isdigit():
            expect_exp_digit = False
        elif ch == ".":
            if seen_dot or seen_e or seen_percent:
                break
            seen_dot = True
        elif ch in "eE":
            if seen_e or seen_percent:
                break
            seen_e = expect_exp_digit = True
        elif ch in "+-":
            if not expect_exp_digit:
                break
            expect_exp_digit = False
        elif ch == "%":
            if seen_percent:
                break
            seen_percent = True
        elif ch.isalpha():
            if expect_exp_digit:
                break
            while pos < len(text) and text[pos].isalpha():
                pos += 1
            break
        else:
            break
        pos += 1
    return pos


def _is_quantity(word: str) -> bool:
    for i, ch in enumerate(word):
        if not ch.isdigit() and ch not in ".eE+-":
            return i > 0 and word[i:] in _QUANTITY_UNITS
    return False


def _parse_number(word: str) -> float:
    try:
        if word.endswith("%"):
            return float(word[:-1]) / 100
        return float(word)
    except ValueError as exc:
        raise ExpressionError(f"invalid number {word!r}") from exc


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def peek(self) -> _Token:
        return self._tokens[self._index]

    def _take(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _expect(self, op: str) -> None:
        token = self._take()
        if token.kind != "op" or token.text != op:
            raise ExpressionError(
                f"expected {op!r} but found {token.text!r} at column {token.position + 1}"
            )

    def expression(self) -> _Node:
        node = self._term()
        while (token := self.peek()).kind == "op" and token.text in "+-":
            self._take()
            node = _BinOp(token.text, node, self._term())
        return node

    def _term(self) -> _Node:
        node = self._factor()
        while (token := self.peek()).kind == "op" and token.text in "*/":
            self._take()
            node = _BinOp(token.text, node, self._factor())
        return node

    def _factor(self) -> _Node:
        token = self._take()
        if token.kind == "num":
            if not _is_plain_number(token.text):
                raise ExpressionError(
                    f"invalid number {token.text!r} at column {token.position + 1}: "
                    f"units are {', '.join(sorted(_QUANTITY_UNITS))}"
                )
            return _Num(_parse_number(token.text))
        if token.kind == "qty":
            try:
                return _Qty(parse_quantity(token.text))
            except QuantityError as exc:
                raise ExpressionError(f"invalid quantity {token.text!r}: {exc}") from exc
        if token.kind == "ident":
            following = self.peek()
            if following.kind == "op" and following.text == "(":
                self._take()
                args = [self.expression()]
                if (comma := self.peek()).kind == "op" and comma.text == ",":
                    self._take()
                    args.append(self.expression())
                self._expect(")")
                return _Call(token.text.lower(), tuple(args))
            return _Var(token.text.lower())
        if token.kind == "op" and token.text == "(":
            node = self.expression()
            self._expect(")")
            return node
        if token.kind == "op" and token.text == "-":
            return _Neg(self._factor())
        raise ExpressionError(f"unexpected {token.text!r} at column {token.position + 1}")


def _is_plain_number(word: str) -> bool:
    try:
        _parse_number(word)
    except ExpressionError:
        return False
    return True


def _variables(node: _Node) -> set[str]:
    match node:
        case _Var(name):
            return {name}
        case _Neg(operand):
            return _variables(operand)
        case _BinOp(_, left, right):
            return _variables(left) | _variables(right)
        case _Call(_, args):
            return set().union(*(_variables(a) for a in args))
        case _:
            return set()


def _truncate(number: float) -> int:
    """Go's `int64(f)`: toward zero. A non-finite result is an error rather than garbage."""
    if not math.isfinite(number):
        raise ExpressionError("calculation overflowed")
    return int(number)


def _as_quantity(value: ExprValue) -> Quantity:
    if isinstance(value, Quantity):
        return value
    return Quantity.from_milli(_truncate(value * 1000))


def _evaluate(node: _Node, values: Mapping[str, ExprValue]) -> ExprValue:
    match node:
        case _Num(number):
            return number
        case _Qty(quantity):
            return quantity
        case _Var(name):
            if name not in values:
                raise ExpressionError(f"undefined variable: {name}")
            return values[name]
        case _Neg(operand):
            inner = _evaluate(operand, values)
            if isinstance(inner, Quantity):
                return Quantity(value=-inner.value, format=inner.format)
            return -inner
        case _BinOp(op, left, right):
            return _binary(op, _evaluate(left, values), _evaluate(right, values))
        case _Call(name, args):
            if name not in _FUNCTIONS:
                raise ExpressionError(f"unknown function: {name}")
            if len(args) != 2:
                raise ExpressionError(
                    f"{name} function requires exactly 2 arguments, got {len(args)}"
                )
            return _extreme(name, _evaluate(args[0], values), _evaluate(args[1], values))
    raise AssertionError(f"unknown expression node {node!r}")


def _binary(op: str, left: ExprValue, right: ExprValue) -> ExprValue:
    if op in "+-":
        if isinstance(left, Quantity) or isinstance(right, Quantity):
            lq, rq = _as_quantity(left), _as_quantity(right)
            total = lq.value + rq.value if op == "+" else lq.value - rq.value
            fmt = rq.format if lq.value == 0 else lq.format
            return Quantity(value=total, format=fmt)
        assert isinstance(left, float)
        assert isinstance(right, float)
        return left + right if op == "+" else left - right
    if op == "*":
        if isinstance(left, Quantity) and isinstance(right, Quantity):
            raise ExpressionError("multiplication of two quantities")
        if isinstance(left, Quantity) or isinstance(right, Quantity):
            quantity, factor = (left, right) if isinstance(left, Quantity) else (right, left)
            assert isinstance(quantity, Quantity)
            assert isinstance(factor, float)
            return Quantity.from_milli(_truncate(quantity.milli_value() * factor), quantity.format)
        assert isinstance(left, float)
        assert isinstance(right, float)
        return left * right
    if isinstance(right, Quantity):
        raise ExpressionError("division by quantity")
    if right == 0:
        raise ExpressionError("division by zero")
    if isinstance(left, Quantity):
        return Quantity.from_milli(_truncate(left.milli_value() / right), left.format)
    return left / right


def _extreme(name: str, left: ExprValue, right: ExprValue) -> ExprValue:
    if isinstance(left, float) and isinstance(right, float):
        if name == "max":
            return left if left >= right else right
        return left if left <= right else right
    lq, rq = _as_quantity(left), _as_quantity(right)
    if name == "max":
        return lq if lq.value >= rq.value else rq
    return lq if lq.value <= rq.value else rq


def _render(value: ExprValue) -> str:
    return value.to_json() if isinstance(value, Quantity) else f"{value:g}"
