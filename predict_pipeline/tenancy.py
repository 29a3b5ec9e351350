"""Who may see what, for the pipeline's stages (which run as the BYPASSRLS pipeline role) and
for the CLI's `--as USER` / `--org ORG` views.

The definition lives once, in SQL (`sql/0050_stage_visibility.sql`: `predict_sees_event`,
`predict_user_orgs`, `predict_rule_viewer`, `predict_sees_campaign`,
`predict_may_update_campaign`), and every stage's query calls it. `Viewer`, `sees_event`,
`rule_viewer` and `sees_campaign` restate it in Python for the reference evaluation of rules
(`rules.triggers`), which the rule tick's SQL is tested against; keep the two in step.

A viewer sees an event that is public, that belongs to one of its orgs, or that its user
created. A user is a viewer with every org they are a member of; a personal rule sees as its
owner; an org rule sees public events and its org's events while its owner is a member; a
system rule sees public events only (every user can read system rules, so their firings must
never carry a private event).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass

import psycopg


@dataclass(frozen=True, slots=True)
class Viewer:
    """A user (or none) and the orgs whose private events it sees."""

    user_id: Hashable | None
    org_ids: frozenset[Hashable] = frozenset()


def sees_event(
    viewer: Viewer, *, is_public: bool | None, org_id: Hashable | None, created_by: Hashable | None
) -> bool:
    """predict_sees_event: public, one of the viewer's orgs', or created by the viewer's user."""
    return (
        bool(is_public)
        or (org_id is not None and org_id in viewer.org_ids)
        or (created_by is not None and created_by == viewer.user_id)
    )


def sees_campaign(viewer: Viewer, *, owner: Hashable | None, org_id: Hashable | None) -> bool:
    """predict_sees_campaign: the viewer's own campaign or one of its orgs'."""
    return (owner is not None and owner == viewer.user_id) or (
        org_id is not None and org_id in viewer.org_ids
    )


def rule_viewer(
    owner: Hashable,
    rule_org: Hashable | None,
    is_system: bool | None,
    memberships: Mapping[Hashable, Collection[Hashable]],
) -> Viewer:
    """predict_rule_viewer: whom a rule sees as; `memberships` maps a user to their orgs."""
    if is_system:
        return Viewer(None)
    orgs = frozenset(memberships.get(owner, ()))
    if rule_org is not None:
        return Viewer(None, frozenset({rule_org}) if rule_org in orgs else frozenset())
    return Viewer(owner, orgs)


def find_user(conn: psycopg.Connection, who: str) -> uuid.UUID:
    """A user named by id or e-mail (case-insensitive); LookupError when there is none."""
    try:
        user_id: uuid.UUID | None = uuid.UUID(who)
    except ValueError:
        user_id = None
    row = conn.execute(
        "SELECT id FROM auth.users WHERE id = %s OR lower(email) = lower(%s)"
        " ORDER BY id = %s DESC LIMIT 1",
        (user_id, who, user_id),
    ).fetchone()
    if row is None:
        raise LookupError(f"no user {who!r} (give an id or an e-mail address)")
    return row[0]


def find_org(conn: psycopg.Connection, org: str) -> uuid.UUID:
    """An org named by id or slug; LookupError when there is none."""
    try:
        org_id: uuid.UUID | None = uuid.UUID(org)
    except ValueError:
        org_id = None
    row = conn.execute(
        "SELECT id FROM prediction_orgs WHERE id = %s OR slug = %s LIMIT 1", (org_id, org)
    ).fetchone()
    if row is None:
        raise LookupError(f"no org {org!r} (give an id or a slug)")
    return row[0]
