"""Apache Airflow provider for Mailchimp: hook, batch operators, trigger, sensor and the sync engine."""

__version__ = "0.1.0"
