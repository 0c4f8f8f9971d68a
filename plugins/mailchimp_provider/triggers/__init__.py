"""Triggers run by Airflow's triggerer (``triggers.batch.MailchimpBatchTrigger``)."""
