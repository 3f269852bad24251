"""Suite-wide configuration: Hypothesis profiles.

``ci`` (the default) keeps runs deterministic and bounded; set
``HYPOTHESIS_PROFILE=explore`` for a long randomized run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
