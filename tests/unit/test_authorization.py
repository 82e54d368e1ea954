"""The answer to a badge: site list first, then the charger's local list, then the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from gateway.authorization import STATUSES, Badge, decide, for_16

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER, EARLIER = NOW + timedelta(days=1), NOW - timedelta(seconds=1)


def test_the_site_list_comes_before_the_chargers_list():
    assert decide(NOW, Badge("A", "Blocked"), Badge("A", "Accepted"), None, True).status == "Blocked"
    assert decide(NOW, Badge("A", "Accepted"), Badge("A", "Blocked"), None, False).source == "site"
    charger = decide(NOW, None, Badge("A", "Accepted", LATER, "FLEET"), None, False)
    assert (charger.status, charger.expiry, charger.parent, charger.source) == ("Accepted", LATER, "FLEET", "charger")


def test_badges_on_no_list_follow_the_policy():
    assert decide(NOW, None, None, None, accept_unknown=False).status == "Invalid"
    assert decide(NOW, None, None, None, accept_unknown=True).status == "Accepted"


def test_expiry_and_groups():
    assert decide(NOW, Badge("A", expiry=EARLIER), None, None, True).status == "Expired"
    assert decide(NOW, Badge("A", expiry=NOW), None, None, True).status == "Expired"
    assert decide(NOW, Badge("A", expiry=LATER), None, None, True).status == "Accepted"
    assert decide(NOW, Badge("A", parent="G"), None, Badge("G", "Blocked"), True).status == "Blocked"
    assert decide(NOW, Badge("A", parent="G"), None, Badge("G", expiry=EARLIER), True).status == "Expired"
    # A blocked badge stays blocked whatever its group; the group is the site's word, not the charger's list.
    assert decide(NOW, Badge("A", "Blocked", parent="G"), None, Badge("G"), True).status == "Blocked"
    assert decide(NOW, None, Badge("A", parent="G"), Badge("G", "Blocked"), True).status == "Accepted"


@given(st.sampled_from(STATUSES), st.sampled_from(STATUSES), st.booleans(), st.integers(-10**6, 10**6), st.booleans())
def test_never_accepted_past_expiry_or_when_listed_refused(site_status, group_status, on_site, offset_s, accept):
    expiry = NOW + timedelta(seconds=offset_s)
    badge = Badge("A", site_status, expiry, "G")
    decision = decide(NOW, badge if on_site else None, None if on_site else badge, Badge("G", group_status), accept)
    if decision.status == "Accepted":
        assert site_status == "Accepted" and expiry > NOW
        assert group_status == "Accepted" or not on_site


def test_16_words():
    assert for_16("NotAtThisTime") == "Invalid" and for_16("Blocked") == "Blocked"
