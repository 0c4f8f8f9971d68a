"""``activity_fanout_<name>``: the engagement pull's ``pull_campaigns >> pull_email_activity``, once
per config file ``<name>.yaml`` in ``$MAILCHIMP_FANOUT_CONFIG_DIR`` (no variable, no DAGs).

Why a DAG of its own: ``activity.shards`` decides at parse time how many mapped instances
``pull_email_activity`` has, so comparing shard counts on one running stack needs one DAG per
count, and a table prefix per config lets two of them load one warehouse side by side. The two
tasks are the shipped operators, mapped as ``dags/mailchimp_engagement_pull.py`` maps them, in the
shared pool; no retries, so a failure shows. ``scripts/bench_stack_fanout.py`` and
``tests/stack/test_stack_fanout.py`` add this folder to the stack (``StackConfig.extra_dag_folders``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG

from mailchimp_provider.dag_defaults import default_args
from mailchimp_provider.operators.engagement import MailchimpCampaignPullOperator, MailchimpEmailActivityPullOperator
from mailchimp_provider.reverse.config import EngagementConfig, load_config

CONFIG_DIR_ENV = "MAILCHIMP_FANOUT_CONFIG_DIR"
DAG_PREFIX = "activity_fanout_"


def fanout_dag(dag_id: str, config: EngagementConfig) -> DAG:
    """Campaigns, then the email activity: one task, or one mapped instance per shard."""
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_runs=1,
             tags=["stack-fanout"], default_args=default_args(retries=0)) as dag:
        campaigns = MailchimpCampaignPullOperator(task_id="pull_campaigns", config=config)
        shards = config.activity.shards
        if shards == 1:
            activity = MailchimpEmailActivityPullOperator(task_id="pull_email_activity", config=config)
        else:
            activity = MailchimpEmailActivityPullOperator.partial(
                task_id="pull_email_activity", config=config,
            ).expand(shard=list(range(shards)))
        campaigns >> activity
    return dag


_folder = os.environ.get(CONFIG_DIR_ENV)
for _path in sorted(Path(_folder).glob("*.yaml")) if _folder else ():
    globals()[DAG_PREFIX + _path.stem] = fanout_dag(DAG_PREFIX + _path.stem, load_config(_path))
