"""TeX escaping: any text (prose, names and expressions from the spec, file names) as ASCII.

The LaTeX report is ASCII only, so that pdflatex reads it whatever the input encoding and
no character turns into '?' on the way. TeX's special characters are escaped; every other
non-ASCII character is written as a command: Greek letters and symbols as math (inside
\\ensuremath, so that two of them never meet as $$), accented Latin letters with TeX's
accent commands, a few letters by name (ß, ø), and anything else by its code point,
[U+4E2D], which prints as it reads.
"""

from __future__ import annotations

import unicodedata

SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "$": r"\$",
    "&": r"\&",
    "#": r"\#",
    "^": r"\^{}",
    "_": r"\_",
    "%": r"\%",
    "~": r"\~{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}

# characters of text that have a name in LaTeX (text mode)
SYMBOLS = {
    "—": "---",
    "–": "--",
    "…": r"\dots{}",
    "‘": "`",
    "’": "'",
    "“": "``",
    "”": "''",
    "\u00a0": "~",
    "ß": r"\ss{}",
    "æ": r"\ae{}",
    "Æ": r"\AE{}",
    "ø": r"\o{}",
    "Ø": r"\O{}",
    "œ": r"\oe{}",
    "Œ": r"\OE{}",
    "ł": r"\l{}",
    "Ł": r"\L{}",
    "ı": r"\i{}",
    "½": r"\ensuremath{\frac{1}{2}}",
    "ŷ": r"\ensuremath{\hat{y}}",
    "−": r"\ensuremath{-}",
    "²": r"\ensuremath{^{2}}",
    "→": r"\ensuremath{\to}",
    "←": r"\ensuremath{\leftarrow}",
    "≤": r"\ensuremath{\le}",
    "≥": r"\ensuremath{\ge}",
    "≠": r"\ensuremath{\neq}",
    "±": r"\ensuremath{\pm}",
    "∞": r"\ensuremath{\infty}",
    "·": r"\ensuremath{\cdot}",
    "×": r"\ensuremath{\times}",
    "ᵀ": r"\ensuremath{^{\mathsf{T}}}",
    "⊙": r"\ensuremath{\odot}",
    "‖": r"\ensuremath{\|}",
    "∂": r"\ensuremath{\partial}",
    "ℓ": r"\ensuremath{\ell}",
    "√": r"\ensuremath{\surd}",
    "µ": r"\ensuremath{\mu}",
}

# combining marks (of a character's canonical decomposition) -> TeX's accent command
ACCENTS = {
    "\u0300": "`",
    "\u0301": "'",
    "\u0302": "^",
    "\u0303": "~",
    "\u0304": "=",
    "\u0306": "u",
    "\u0307": ".",
    "\u0308": '"',
    "\u030a": "r",
    "\u030b": "H",
    "\u030c": "v",
    "\u0327": "c",
    "\u0328": "k",
}

# Greek capitals TeX has a command for; the others look like Latin letters (Alpha is A)
GREEK_CAPITALS = {
    "GAMMA",
    "DELTA",
    "THETA",
    "LAMDA",
    "XI",
    "PI",
    "SIGMA",
    "UPSILON",
    "PHI",
    "PSI",
    "OMEGA",
}
GREEK_LATIN = {
    "ALPHA": "A",
    "BETA": "B",
    "EPSILON": "E",
    "ZETA": "Z",
    "ETA": "H",
    "IOTA": "I",
    "KAPPA": "K",
    "MU": "M",
    "NU": "N",
    "OMICRON": "O",
    "RHO": "P",
    "TAU": "T",
    "CHI": "X",
}


def greek(c: str) -> str | None:
    """A Greek letter as a math-mode command (\\sigma, \\Omega, A), else None."""
    name = unicodedata.name(c, "")
    for case, prefix in (
        ("small", "GREEK SMALL LETTER "),
        ("capital", "GREEK CAPITAL LETTER "),
    ):
        if not name.startswith(prefix):
            continue
        letter = name[len(prefix) :]
        if letter == "FINAL SIGMA":
            return r"\varsigma"
        if " " in letter:  # with a tonos, a dialytika ...: not one command
            return None
        if case == "capital":
            if letter in GREEK_CAPITALS:
                return "\\" + letter.capitalize().replace("Lamda", "Lambda")
            return GREEK_LATIN.get(letter)
        if letter == "OMICRON":
            return "o"
        return "\\" + letter.lower().replace("lamda", "lambda")
    return None


def _accented(c: str) -> str | None:
    """An accented Latin letter with TeX accent commands: ö -> \\"{o}, else None."""
    base, *marks = unicodedata.normalize("NFD", c)
    if not (base.isascii() and base.isalpha()) or not marks:
        return None
    if any(m not in ACCENTS for m in marks):
        return None
    out = base
    for m in marks:
        out = f"\\{ACCENTS[m]}{{{out}}}"
    return out


def code_point(c: str) -> str:
    return f"[U+{ord(c):04X}]"


def text(s: str) -> str:
    """s for LaTeX's text mode, in ASCII: specials escaped, other characters as commands."""
    out = []
    for c in s:
        if c in SPECIAL:
            out.append(SPECIAL[c])
        elif " " <= c <= "~":
            out.append(c)
        elif c in SYMBOLS:
            out.append(SYMBOLS[c])
        elif (g := greek(c)) is not None:
            out.append(rf"\ensuremath{{{g}}}" if g.startswith("\\") else g)
        elif (acc := _accented(c)) is not None:
            out.append(acc)
        else:
            out.append(code_point(c))
    return "".join(out)


def identifier(name: str) -> str:
    """An identifier for math mode (inside \\operatorname): ASCII letters and digits as
    they are, _ escaped, Greek letters as commands, anything else as text."""
    out = []
    for c in name:
        if c.isascii() and c.isalnum():
            out.append(c)
        elif c == "_":
            out.append(r"\_")
        elif (g := greek(c)) is not None:
            out.append(g + (" " if g.startswith("\\") else ""))
        else:
            out.append(rf"\text{{{text(c)}}}")
    return "".join(out).rstrip()
