"""The ImageJ macro language read as ImageJ 1.x reads it: tokens, function calls, syntax slips.

ImageJ tokenizes a macro with ``java.io.StreamTokenizer`` (``ij.macro.Tokenizer``): ``//`` and
``/* */`` comments, strings in ``"`` or ``'`` with backslash escapes that end at their quote
*or silently at the end of the line*, names made of letters, digits and ``_``, and ``.`` as
an operator of its own (``File . delete`` is ``File.delete``). :func:`tokenize` follows the
same rules, so that what is found here is what ImageJ will run: a call inside a string or a
comment is no call, a call split by spaces or comments is one.

On top of the tokens: :func:`calls` (every function call with its arguments and the line it
is on, and the constant value of an argument when it has one), and :func:`syntax_errors`
(slips ImageJ runs through without a word: an unterminated string or comment, unbalanced
brackets). Used by the macro audit (:mod:`deepimagej.audit.macros`) and by the macro runner
(:mod:`deepimagej.imagej.macro`) before a macro runs.
"""

from __future__ import annotations

from dataclasses import dataclass

#: StreamTokenizer's escapes inside strings (any other ``\\c`` stands for ``c``)
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
#: two-character operators ImageJ's tokenizer joins
_OPERATORS2 = {"++", "--", "+=", "-=", "*=", "/=", "==", "!=", ">=", "<=", ">>", "<<", "&&", "||"}
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
#: names whose value is known without running the macro (``File.separator`` on the systems ImageJ runs on here)
_CONSTANT_NAMES = {"File.separator": "/"}


@dataclass(frozen=True)
class Token:
    """One token of a macro.

    Attributes:
        kind: ``"name"`` (identifier or keyword), ``"number"``, ``"string"`` or ``"op"``.
        text: the name, the number as written, the operator, or a string's value (escapes decoded).
        line: the line it starts on (1-based), as ImageJ counts lines.
    """

    kind: str
    text: str
    line: int


@dataclass(frozen=True)
class Call:
    """A call of a (built-in or user) function: ``name(args...)``.

    Attributes:
        name: the function, dotted names joined (``"File.delete"``, ``"run"``, ``"s.indexOf"``).
        line: the line of the function name.
        args: the tokens of each argument, split at top-level commas.
    """

    name: str
    line: int
    args: tuple[tuple[Token, ...], ...]

    def literal(self, index: int) -> str | None:
        """The value of argument ``index`` when it is a constant, else ``None``.

        Constants are string and number literals, ``File.separator``, and ``+`` of constants
        (ImageJ concatenates a string with a number as text). Anything else (a variable, a
        function call, another operator) depends on the run and gives ``None``.
        """
        if index >= len(self.args):
            return None
        return constant_value(self.args[index])


def constant_value(tokens: tuple[Token, ...] | list[Token]) -> str | None:
    """The value of an expression made only of literals joined by ``+``, else ``None``."""
    parts: list[str] = []
    expect_operand = True
    i = 0
    toks = list(tokens)
    while i < len(toks):
        tok = toks[i]
        if expect_operand:
            if tok.kind == "string":
                parts.append(tok.text)
            elif tok.kind == "number":
                value = float(tok.text) if not tok.text.lower().startswith("0x") else float(int(tok.text, 16))
                parts.append(str(int(value)) if value.is_integer() else repr(value))
            elif tok.kind == "name" and _dotted_name(toks, i)[0] in _CONSTANT_NAMES:
                name, i = _dotted_name(toks, i)
                parts.append(_CONSTANT_NAMES[name])
                if i + 1 < len(toks) and toks[i].text == "(" and toks[i + 1].text == ")":
                    i += 2
                expect_operand = False
                continue
            else:
                return None
            expect_operand = False
        elif tok.kind == "op" and tok.text == "+":
            expect_operand = True
        else:
            return None
        i += 1
    if expect_operand:  # empty, or ends with "+"
        return None
    return "".join(parts)


class _Scanner:
    """Turns macro text into tokens; collects the slips ImageJ's tokenizer passes over silently."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.tokens: list[Token] = []
        self.problems: list[tuple[int, str]] = []

    def run(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch == "\n":
                self.line += 1
                self.pos += 1
            elif ch == "\r":  # \r\n counts once, a lone \r is a line end too (as in StreamTokenizer)
                self.line += 1
                self.pos += 2 if text.startswith("\r\n", self.pos) else 1
            elif ch.isspace() or 128 <= ord(ch) <= 255:  # ImageJ makes 128-255 whitespace
                self.pos += 1
            elif text.startswith("//", self.pos):
                while self.pos < n and text[self.pos] not in "\r\n":
                    self.pos += 1
            elif text.startswith("/*", self.pos):
                self._block_comment()
            elif ch in "\"'":
                self._string(ch)
            elif ch.isdigit():
                self._number()
            elif ch.isalpha() or ch == "_" or ord(ch) > 255:
                start = self.pos
                while self.pos < n and (
                    text[self.pos].isalnum() or text[self.pos] == "_" or ord(text[self.pos]) > 255
                ):
                    self.pos += 1
                self.tokens.append(Token("name", text[start : self.pos], self.line))
            else:
                two = text[self.pos : self.pos + 2]
                op = two if two in _OPERATORS2 else ch
                self.tokens.append(Token("op", op, self.line))
                self.pos += len(op)

    def _block_comment(self) -> None:
        start_line = self.line
        end = self.text.find("*/", self.pos + 2)
        body = self.text[self.pos :] if end < 0 else self.text[self.pos : end + 2]
        self.line += body.count("\n") + body.count("\r") - body.count("\r\n")
        if end < 0:
            self.problems.append((start_line, "unterminated comment: the '/*' is never closed by '*/'"))
            self.pos = len(self.text)
        else:
            self.pos = end + 2

    def _string(self, quote: str) -> None:
        text, n = self.text, len(self.text)
        self.pos += 1
        out: list[str] = []
        while self.pos < n:
            ch = text[self.pos]
            if ch == quote:
                self.pos += 1
                self.tokens.append(Token("string", "".join(out), self.line))
                return
            if ch in "\r\n":
                break
            if ch == "\\" and self.pos + 1 < n:
                nxt = text[self.pos + 1]
                if nxt in "01234567":  # octal escape, up to three digits
                    j = self.pos + 1
                    while j < n and j < self.pos + 4 and text[j] in "01234567":
                        j += 1
                    out.append(chr(int(text[self.pos + 1 : j], 8) & 0xFF))
                    self.pos = j
                    continue
                if nxt in "\r\n":
                    break
                out.append(_ESCAPES.get(nxt, nxt))
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        # ImageJ ends the string here without a word and runs the rest of the line as code
        self.problems.append((self.line, f"unterminated string: a {quote} is not closed on its line"))
        self.tokens.append(Token("string", "".join(out), self.line))

    def _number(self) -> None:
        text, n = self.text, len(self.text)
        start = self.pos
        if text.startswith(("0x", "0X"), self.pos):
            self.pos += 2
            while self.pos < n and text[self.pos] in "0123456789abcdefABCDEF":
                self.pos += 1
        else:
            seen_dot = False
            while self.pos < n and (text[self.pos].isdigit() or (text[self.pos] == "." and not seen_dot)):
                seen_dot = seen_dot or text[self.pos] == "."
                self.pos += 1
            if self.pos < n and text[self.pos] in "eE":  # scientific notation: 1e-3, 2.5E4
                j = self.pos + 1
                if j < n and text[j] in "+-":
                    j += 1
                if j < n and text[j].isdigit():
                    while j < n and text[j].isdigit():
                        j += 1
                    self.pos = j
        self.tokens.append(Token("number", text[start : self.pos], self.line))


def tokenize(text: str) -> tuple[list[Token], list[tuple[int, str]]]:
    """The tokens of a macro (comments dropped) and the ``(line, problem)`` slips found on the way.

    The slips are those ImageJ passes over silently: a string not closed on its line (ImageJ
    ends it there and runs the rest of the line as code) and a ``/*`` comment never closed
    (ImageJ ignores the rest of the file).
    """
    scanner = _Scanner(text)
    scanner.run()
    return scanner.tokens, scanner.problems


def _dotted_name(tokens: list[Token], i: int) -> tuple[str, int]:
    """The dotted name starting at ``tokens[i]`` (a name) and the index just after it."""
    parts = [tokens[i].text]
    j = i + 1
    while (
        j + 1 < len(tokens)
        and tokens[j].kind == "op"
        and tokens[j].text == "."
        and tokens[j + 1].kind == "name"
    ):
        parts.append(tokens[j + 1].text)
        j += 2
    return ".".join(parts), j


def _arguments(tokens: list[Token], open_index: int) -> tuple[tuple[tuple[Token, ...], ...], int]:
    """The arguments of the call whose ``(`` is at ``open_index``, and the index after its ``)``."""
    args: list[tuple[Token, ...]] = []
    current: list[Token] = []
    depth = 0
    j = open_index + 1
    while j < len(tokens):
        tok = tokens[j]
        if tok.kind == "op" and tok.text in _OPENERS:
            depth += 1
        elif tok.kind == "op" and tok.text in _CLOSERS:
            if depth == 0:
                if current or args:
                    args.append(tuple(current))
                return tuple(args), j + 1
            depth -= 1
        elif tok.kind == "op" and tok.text == "," and depth == 0:
            args.append(tuple(current))
            current = []
            j += 1
            continue
        current.append(tok)
        j += 1
    if current or args:
        args.append(tuple(current))
    return tuple(args), j


def calls(tokens: list[Token]) -> list[Call]:
    """Every function call in ``tokens``, outer calls before the calls in their arguments.

    A user function's definition (``function name(a, b) {``) is not a call; a method call on a
    string (``s.indexOf("x")``) is one, named ``"s.indexOf"``.
    """
    found: list[Call] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind != "name" or (i > 0 and tokens[i - 1].kind == "op" and tokens[i - 1].text == "."):
            i += 1
            continue
        name, after = _dotted_name(tokens, i)
        is_call = after < len(tokens) and tokens[after].kind == "op" and tokens[after].text == "("
        defined = i > 0 and tokens[i - 1].kind == "name" and tokens[i - 1].text == "function"
        if is_call and not defined:
            args, _ = _arguments(tokens, after)
            found.append(Call(name, tok.line, args))
        i = max(i + 1, after)
    return found


def syntax_errors(text: str) -> list[tuple[int, str]]:
    """``(line, message)`` for slips that ImageJ runs through silently or reports only at the end.

    An unterminated string or ``/*`` comment, a closing bracket without its opening one or
    closing another kind, and a ``(``, ``[`` or ``{`` never closed. The messages follow
    ImageJ's (``"')' expected"``) and name the line of the bracket at fault.
    """
    tokens, problems = tokenize(text)
    errors = list(problems)
    stack: list[Token] = []
    for tok in tokens:
        if tok.kind != "op":
            continue
        if tok.text in _OPENERS:
            stack.append(tok)
        elif tok.text in _CLOSERS:
            if not stack:
                errors.append(
                    (tok.line, f"unexpected '{tok.text}': no '{_CLOSERS[tok.text]}' before it is open")
                )
                break
            opener = stack.pop()
            if _OPENERS[opener.text] != tok.text:
                errors.append(
                    (
                        tok.line,
                        (
                            f"'{_OPENERS[opener.text]}' expected before '{tok.text}' "
                            f"(the '{opener.text}' in line {opener.line} is not closed)"
                        ),
                    )
                )
                break
    else:
        if stack:
            opener = stack[-1]
            errors.append(
                (
                    opener.line,
                    (
                        f"'{_OPENERS[opener.text]}' expected: the '{opener.text}' in line "
                        f"{opener.line} is never closed"
                    ),
                )
            )
    return sorted(errors)
