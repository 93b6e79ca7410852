"""Hypothesis settings profiles: the full budget in CI, a fifth of it in the quick lane.

``scripts/test.sh --fast`` sets ``ZZD_TEST_PROFILE=fast``. Unset (CI, a plain
``pytest``), no profile is loaded here and Hypothesis keeps its own choice:
``ci`` under ``CI=true`` (derandomized, no deadline), ``default`` elsewhere,
both with the full number of examples. ``fast`` is whichever of those is
loaded, with a fifth of the examples. A test that asks for its own number
of examples asks through ``examples()``, so the quick lane runs fewer of
those too (an explicit ``max_examples`` would override the profile) while
CI runs exactly the number written.
"""

from __future__ import annotations

import math
import os

from hypothesis import settings

__all__ = ["FULL_EXAMPLES", "PROFILE", "examples"]

#: Hypothesis's default ``max_examples``: what CI runs for a test that names none.
FULL_EXAMPLES = settings.get_profile("default").max_examples

settings.register_profile("fast", parent=settings.default, max_examples=FULL_EXAMPLES // 5)

#: The profile ``ZZD_TEST_PROFILE`` names, loaded here; empty: Hypothesis's own (``ci`` or ``default``).
PROFILE = os.environ.get("ZZD_TEST_PROFILE", "")
if PROFILE:
    settings.load_profile(PROFILE)


def examples(full: int) -> int:
    """``full`` examples under the full budget; the same share of them the loaded profile runs (at least two)."""
    return max(2, math.ceil(full * settings.default.max_examples / FULL_EXAMPLES))
