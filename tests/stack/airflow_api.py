"""The stack tests' REST and emulator clients live in ``scripts/stack_api.py`` (the stack benchmark
uses them too); this module keeps the tests' short import."""

from scripts.stack_api import POST_BATCHES, PUT_MEMBER, TERMINAL, AirflowApi, Emulator

__all__ = ["POST_BATCHES", "PUT_MEMBER", "TERMINAL", "AirflowApi", "Emulator"]
