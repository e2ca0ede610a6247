"""
The option tables of C{docs/running.rst} and C{docs/client.rst}, made from
the C{Options} classes: C{python docs/optiontable.py} rewrites each table
between its markers, and C{tests/integration/test_docs.py} fails when one
differs from what this makes.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterator

from twisted.python import usage

DOCS = os.path.dirname(os.path.abspath(__file__))
TABLES = {"running.rst": "streamd.tap.Options", "client.rst": "streamd.client.__main__.ClientOptions"}
_MARKERS = re.compile(r"(^\.\. BEGIN OPTIONS (?P<name>\S+)[^\n]*\n)(?P<table>.*?)(^\.\. END OPTIONS$)", re.DOTALL | re.M)
_HIDDEN = {"help", "version"}
_WIDTH = 64


def rows(options: type[usage.Options]) -> list[tuple[str, str, str]]:
    """
    The option, its default and its meaning, for each option of C{options}.
    """
    found: dict[str, tuple[str, str, str]] = {}
    # The mixins' options too (streamoptions, durableoptions), as --help shows them.
    for kind in reversed(options.__mro__):
        for name, short, doc in vars(kind).get("optFlags", []):
            found[name] = (_option(name, short), "off", doc)
        for name, short, default, doc, *_ in vars(kind).get("optParameters", []):
            found[name] = (_option(name, short), "none" if default is None else f"{default:g}" if isinstance(default, float) else str(default), doc)
    for attribute in (a for a in dir(options) if a.startswith("opt_")):
        method = getattr(options, attribute)
        name = attribute.removeprefix("opt_").replace("_", "-")
        if name not in _HIDDEN and len(name) > 1:
            short = next((a[4:] for a in dir(options) if len(a) == 5 and a.startswith("opt_") and getattr(options, a) is method), None)
            found[name] = (_option(name, short), "none", " ".join((method.__doc__ or "").split()))
    return [found[name] for name in sorted(found)]


def _option(name: str, short: str | None) -> str:
    return f"``--{name}``" + (f", ``-{short}``" if short else "")


def table(options: type[usage.Options]) -> str:
    """
    The RST simple table of C{options}, as it stands between its markers.
    """
    lines = [(option, default, textwrap.wrap(_rst(doc), _WIDTH, break_on_hyphens=False, break_long_words=False)) for option, default, doc in rows(options)]
    first = max(len("option"), *(len(option) for option, _, _ in lines))
    second = max(len("default"), *(len(default) for _, default, _ in lines))
    rule = f"{'=' * first}  {'=' * second}  {'=' * _WIDTH}"
    out = [rule, f"{'option':<{first}}  {'default':<{second}}  meaning", rule]
    for option, default, meaning in lines:
        out.append(f"{option:<{first}}  {default:<{second}}  {meaning[0]}".rstrip())
        out.extend(f"{'':<{first}}  {'':<{second}}  {more}" for more in meaning[1:])
    out.append(rule)
    return "\n" + "\n".join(out) + "\n\n"


def _rst(doc: str) -> str:
    # A trailing underscore or a lone asterisk would be RST markup.
    return doc.replace("*", "\\*").replace("_ ", "\\_ ")


def tables() -> Iterator[tuple[str, str, str]]:
    """
    Each document with a generated table, the table it holds now, and the
    one it should hold.
    """
    from twisted.python.reflect import namedAny

    for document in TABLES:
        with open(os.path.join(DOCS, document), encoding="utf-8") as f:
            text = f.read()
        for found in _MARKERS.finditer(text):
            yield document, found.group("table"), table(namedAny(found.group("name")))


def main() -> None:
    """
    Rewrite every generated table.
    """
    from twisted.python.reflect import namedAny

    for document in TABLES:
        path = os.path.join(DOCS, document)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = _MARKERS.sub(lambda m: m.group(1) + table(namedAny(m.group("name"))) + m.group(4), text)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
