"""Forward sync: warehouse rows -> Mailchimp writes.

``engine`` holds what every entity shares (change detection, plan, bookkeeping, quarantine,
summary); ``audience`` holds the member rules; the e-commerce modules hold theirs. Import the
submodules directly: this package stays cheap to import for the DAG processor.
"""
