"""How long tests wait for things that take time, scaled for slower boards: PICOMETER_TEST_SLOWNESS=3 on a
Pi Zero 2 W gives every wait three times as long (limits that measure picometer itself do not scale)."""

from __future__ import annotations

import os

SLOWNESS = float(os.environ.get("PICOMETER_TEST_SLOWNESS", "1"))


def patience(seconds: float) -> float:
    return seconds * SLOWNESS
