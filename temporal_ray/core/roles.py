"""The models of one iteration, by role. Roles are data: a role names whose samples a
candidate row holds, and (later) which engine pool serves it."""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    PAST = "past"          # M0: the fixed initial policy (anchored rejection)
    PRESENT = "present"    # M_i: the policy being improved, and the judge
    FUTURE = "future"      # M_f: a DPO step ahead of M_i (future-guided chosen)
