"""Who may see and do what: every answer goes through Airflow's auth manager, DAG by DAG.

Airflow does not protect a plugin's FastAPI app: each route depends on :data:`UserDep` (the JWT
from the ``Authorization: Bearer`` header, or the cookie the Airflow UI sets; no token is 401) and
asks :func:`may` before reading a sync's rows. What a sync shows is gated on *reading* its DAG
(``GET``); its buttons on *creating a run* of it (``POST`` on ``DagAccessEntity.RUN``), exactly the
check Airflow's own trigger endpoint makes; *unpausing* on editing it (``PUT``), the check of
Airflow's ``PATCH /api/v2/dags/{dag_id}``, which the page calls to unpause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import Depends, HTTPException, status

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

Permission = Literal["read", "trigger", "edit"]


def _current_user():  # noqa: ANN202 - Airflow's dependency, resolved lazily so importing this module stays cheap
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


async def current_user(user: Annotated["BaseUser", Depends(_current_user())]) -> "BaseUser":
    """The authenticated Airflow user (401 without a valid token)."""
    return user


UserDep = Annotated["BaseUser", Depends(current_user)]


def may(user: "BaseUser", dag_id: str, permission: Permission = "read") -> bool:
    """Whether ``user`` may read ``dag_id`` (``read``), create runs of it (``trigger``) or edit it
    (``edit``: pause and unpause)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel

    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    if permission == "read":
        return get_auth_manager().is_authorized_dag(method="GET", details=details, user=user)
    if permission == "edit":
        return get_auth_manager().is_authorized_dag(method="PUT", details=details, user=user)
    return get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user
    )


def require(user: "BaseUser", dag_id: str, permission: Permission = "read") -> None:
    """403 unless :func:`may` says yes (the message names the DAG, never the data)."""
    if not may(user, dag_id, permission):
        verb = {"read": "read", "trigger": "trigger runs of", "edit": "edit"}[permission]
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not {verb} the DAG {dag_id!r}.")
