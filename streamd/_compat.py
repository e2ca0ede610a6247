"""
What streamd needs to run on every Twisted that setup.cfg declares.

Twisted's C{Factory} is generic (C{Factory[P]}) from 26.4 on; on 23.10 to
25.5, C{Factory[P]} raises C{TypeError}, so a factory class cannot name it as
its base. C{FactoryOf} gives it a typed base that works on both: mypy, which
CI runs with the newest Twisted, checks C{Factory[P]}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Factory

if TYPE_CHECKING:
    from twisted.internet.protocol import Factory as FactoryOf
else:

    class _FactoryOf:
        """
        C{FactoryOf[P]} is the plain C{Factory} class at run time, whatever
        C{P} is, and C{Factory[P]} for the type checker.
        """

        def __getitem__(self, protocol: Any) -> type[Factory]:
            return Factory

    FactoryOf = _FactoryOf()

__all__ = ["FactoryOf"]
