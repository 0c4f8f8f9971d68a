"""The Mailchimp hook and its building blocks (credentials, retry policy, in-flight limiter, paginator).

Import ``MailchimpHook`` from ``mailchimp_provider.hooks.mailchimp``; this package stays import-light
so provider discovery can read ``hooks.credentials`` (the connection form) without pulling in
requests, aiohttp or Airflow's HTTP provider.
"""
