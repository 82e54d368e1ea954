"""Who may charge: the answer to a badge, from the site's badge list, the local list the gateway sent to the
charger and the site policy for badges on no list. Pure: the store looks the badges up, this decides.

Order: the site's list is the operator's current word, so it comes first; then the list the charger holds
(what the gateway sent it with SendLocalList); then the policy. A badge whose group (parent id) is blocked or
expired on the site list is refused with its group's status, so a whole fleet can be stopped at once.
The answers use the vocabulary both OCPP versions share: Accepted, Blocked, Expired, Invalid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Status = Literal["Accepted", "Blocked", "Expired", "Invalid"]
STATUSES: tuple[Status, ...] = ("Accepted", "Blocked", "Expired", "Invalid")
# 2.0.1 has more refusals than 1.6; a local list may carry them, they read as Invalid in 1.6.
STATUS_16 = {"ConcurrentTx": "ConcurrentTx", "NoCredit": "Invalid", "NotAllowedTypeOfCharging": "Invalid",
             "NotAtThisLocation": "Invalid", "NotAtThisTime": "Invalid", "Unknown": "Invalid"}  # fmt: skip


@dataclass(frozen=True)
class Badge:
    """One entry of a list: an id tag (1.6) or id token (2.0.1) and what it is given."""

    id_tag: str
    status: str = "Accepted"
    expiry: datetime | None = None
    parent: str | None = None  # parentIdTag (1.6) / groupIdToken (2.0.1)


@dataclass(frozen=True)
class Decision:
    status: str
    expiry: datetime | None = None
    parent: str | None = None
    source: Literal["site", "charger", "policy"] = "policy"


def decide(now: datetime, site: Badge | None, charger: Badge | None, group: Badge | None,
           accept_unknown: bool) -> Decision:  # fmt: skip
    """The answer to one badge. ``group`` is the site list's entry of the badge's parent id, if any."""
    for source, badge in (("site", site), ("charger", charger)):
        if badge is None:
            continue
        status = _status(badge, now)
        if status == "Accepted" and source == "site" and group is not None:
            group_status = _status(group, now)
            if group_status != "Accepted":
                status = group_status
        return Decision(status, badge.expiry, badge.parent, source)  # type: ignore[arg-type]
    return Decision("Accepted" if accept_unknown else "Invalid")


def _status(badge: Badge, now: datetime) -> str:
    if badge.status == "Accepted" and badge.expiry is not None and badge.expiry <= now:
        return "Expired"
    return badge.status


def for_16(status: str) -> str:
    """A status as OCPP 1.6 can say it."""
    return STATUS_16.get(status, status)
