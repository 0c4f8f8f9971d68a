"""Warehouse access: engine from the Airflow connection, our tables, upsert and streamed extraction.

Import from the submodules (``warehouse.connection``, ``warehouse.tables``...): this package keeps
its import cheap so the DAG processor does not load SQLAlchemy dialects it does not need.
"""
