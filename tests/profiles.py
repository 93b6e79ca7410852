"""Hypothesis settings profiles: the full budget in CI, a fifth of it in the quick lane.

``scripts/test.sh --fast`` sets ``ZZD_TEST_PROFILE=fast``; anything else (CI,
a plain ``pytest``) runs the ``full`` profile, Hypothesis's own defaults. A
test that asks for its own number of examples asks through ``examples()``,
so the quick lane runs fewer of those too (an explicit ``max_examples``
would override the profile) while CI runs exactly the number written.
"""

from __future__ import annotations

import math
import os

from hypothesis import settings

__all__ = ["FULL_EXAMPLES", "PROFILE", "examples"]

#: Hypothesis's default ``max_examples``: what the full profile runs for a test that names none.
FULL_EXAMPLES = 100

settings.register_profile("full", max_examples=FULL_EXAMPLES)
settings.register_profile("fast", max_examples=FULL_EXAMPLES // 5)

#: The profile this run loads (``ZZD_TEST_PROFILE``; ``full`` unless set).
PROFILE = os.environ.get("ZZD_TEST_PROFILE", "") or "full"
settings.load_profile(PROFILE)


def examples(full: int) -> int:
    """``full`` examples under the full profile; the same share of them the loaded profile runs (at least two)."""
    return max(2, math.ceil(full * settings.default.max_examples / FULL_EXAMPLES))
