"""A batch is validated once (issue #17): the batch runner validates a submission and hands the
hook ``ValidatedOperations`` chunks, which ``submit_batch`` sends as they are; anything else a
caller passes to ``submit_batch`` directly is still checked."""

from __future__ import annotations

import pytest

from mailchimp_provider.hooks import mailchimp as hook_module
from mailchimp_provider.hooks.mailchimp import MailchimpHook, ValidatedOperations, validate_operations


def ops(n: int) -> list[dict]:
    return [{"method": "get", "path": "/ping", "operation_id": f"op{i}", "body": {"n": i}} for i in range(n)]


def test_validated_operations_keep_their_mark_in_chunks():
    validated = validate_operations(ops(5))
    assert type(validated) is ValidatedOperations and validated[0] == {
        "method": "GET", "path": "/ping", "operation_id": "op0", "body": '{"n":0}'}
    chunks = validated.chunks(2)
    assert [len(c) for c in chunks] == [2, 2, 1] and all(type(c) is ValidatedOperations for c in chunks)
    assert [op for c in chunks for op in c] == list(validated)
    assert type(validated[1:3]) is list  # a plain slice is not marked: only chunks() and validation make one


def test_submit_batch_checks_plain_lists_and_sends_validated_ones_as_they_are(emulator, monkeypatch):
    calls = []
    real = hook_module.validate_operations
    monkeypatch.setattr(hook_module, "validate_operations", lambda operations: calls.append(1) or real(operations))
    hook = MailchimpHook()
    with pytest.raises(ValueError, match="field 'method'"):
        hook.submit_batch([{"method": "FETCH", "path": "/ping"}])
    assert len(calls) == 1
    batch = hook.submit_batch(ops(3))
    assert len(calls) == 2 and batch["id"]
    batch = hook.submit_batch(real(ops(4)))
    assert len(calls) == 2 and batch["id"]  # not checked a second time


def test_the_runner_validates_a_submission_once(emulator, sqlite_warehouse, monkeypatch):
    from mailchimp_provider.batches.ledger import BatchLedger, BatchScope
    from mailchimp_provider.batches.runner import BatchRunner
    from mailchimp_provider.warehouse.tables import WarehouseTables

    calls = []
    real = hook_module.validate_operations
    monkeypatch.setattr(hook_module, "validate_operations", lambda operations: calls.append(len(operations)) or real(operations))
    db = sqlite_warehouse.engine
    tables = WarehouseTables()
    runner = BatchRunner(MailchimpHook(), BatchLedger(db, tables), max_operations_per_batch=2)
    batch_ids = runner.submit(BatchScope("dag", "run", "task"), "member", ops(5))
    assert len(batch_ids) == 3
    assert calls == [5]  # the whole submission once, no chunk again
    with pytest.raises(ValueError, match="duplicates operation"):
        runner.submit(BatchScope("dag", "run", "task"), "member", ops(2) + ops(1))
