"""Row groups of Table 1: the survey's categories, in its order, as the methods declare them.

A record's category comes from its `method` section (written by `Method.describe()`, or filled in
by harness.record's migration of older records); nothing here knows a method by name.
"""

from __future__ import annotations

from methods.base import SURVEY_CATEGORIES

# Records whose method declares no survey category (a 1.0 record whose class no longer exists)
# are grouped last, under this name, so they stay visible.
UNCATEGORISED = "Other"
CATEGORY_ORDER = (*SURVEY_CATEGORIES, UNCATEGORISED)


def category_rank(category: str) -> int:
    return CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else len(CATEGORY_ORDER)
