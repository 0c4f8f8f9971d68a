"""The sync dashboard: an Airflow UI plugin (``plugin.py``) serving a page and a JSON API (``app.py``).

``syncs.py`` lists the cards, ``queries.py`` reads the warehouse, ``airflow_runs.py`` reads and
creates DAG runs, ``auth.py`` asks Airflow's auth manager; ``static/`` is the page (plain HTML/JS).
"""
