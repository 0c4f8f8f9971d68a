"""An auth manager for the dashboard specs: Airflow's SimpleAuthManager, plus DAG-level refusals.

SimpleAuthManager grants by role only (a viewer reads every DAG). Deployments with FAB or Keycloak
grant DAG by DAG; this subclass stands for them: the user ``outsider`` (a viewer) may read no
``mailchimp_*`` DAG, everything else is SimpleAuthManager's own answer.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

OUTSIDER = "outsider"


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if user.username == OUTSIDER and details is not None and (details.id or "").startswith("mailchimp_"):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
