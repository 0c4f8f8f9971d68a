"""The Mailchimp batch lifecycle: submit, ledger, wait (stall/expiry aware), stream results.

Import from the submodules (``batches.runner``, ``batches.results``...); this package stays cheap
to import for the DAG processor.
"""
