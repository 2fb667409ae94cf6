"""What counts as a blank, one way for the documents and the code (pure).

The OpenAPI documents' patterns are ECMA-262 regular expressions, whose `\\s` is not
Python's (`str.isspace` also takes U+001C..U+001F and U+0085). A required text must hold
a character that is not a blank by ECMA's list, written out so that both engines read the
same class: the documents use VISIBLE_PATTERN, the code `has_visible`.
"""

from __future__ import annotations

import re

VISIBLE_PATTERN = (
    "[^\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]"
)
_VISIBLE = re.compile(VISIBLE_PATTERN)


def has_visible(text: str) -> bool:
    """Whether `text` holds a character that is not a blank."""
    return _VISIBLE.search(text) is not None
