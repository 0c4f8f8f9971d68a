"""Where the DAGs find ``include/`` (the sync configs and the SQL per entity): one rule for all.

The package is installed into site-packages (a wheel) or used from a source checkout, but
``include/`` is the user's, edited in place next to their DAGs. So it is never looked for relative
to the installed package alone. The rule, in order:

1. An environment variable naming the file itself (``MAILCHIMP_AUDIENCE_SYNC_CONFIG``,
   ``MAILCHIMP_ECOMMERCE_SYNC_CONFIG``, ``MAILCHIMP_ENGAGEMENT_PULL_CONFIG``) or, for the SQL
   files, the folder (``MAILCHIMP_SQL_DIR``). Used as given, whether or not it exists.
2. ``include/`` beside the DAG folder: ``<[core] dags_folder>/../include``.
3. ``$AIRFLOW_HOME/include`` (the same folder in Airflow's default layout).
4. ``include/`` of the source checkout the package runs from (``pip install -e .``, or
   ``plugins/`` mounted as Airflow's plugins folder).

The first candidate folder that holds the file wins. When none does, the error names every path
searched and the environment variable that would override them.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailchimp_provider.errors import MailchimpConfigError

AUDIENCE_CONFIG_ENV = "MAILCHIMP_AUDIENCE_SYNC_CONFIG"
ECOMMERCE_CONFIG_ENV = "MAILCHIMP_ECOMMERCE_SYNC_CONFIG"
ENGAGEMENT_CONFIG_ENV = "MAILCHIMP_ENGAGEMENT_PULL_CONFIG"
SQL_DIR_ENV = "MAILCHIMP_SQL_DIR"

_PACKAGE_DIR = Path(__file__).resolve().parent


class IncludeNotFoundError(MailchimpConfigError):
    """A file of ``include/`` is in none of the places searched; the message lists them."""

    def __init__(self, name: str, searched: list[Path], env: str | None) -> None:
        self.name = name
        self.searched = searched
        self.env = env
        places = "\n  ".join(str(p) for p in searched) or "(no candidate folder)"
        override = f", or set ${env} to its path" if env else ""
        super().__init__(
            f"include/{name} not found. Searched:\n  {places}\n"
            f"Copy include/ next to your dags/ folder (or into $AIRFLOW_HOME){override}."
        )


def _dags_folder() -> Path | None:
    """Airflow's ``[core] dags_folder`` (the environment first: no Airflow import when it is set)."""
    value = os.environ.get("AIRFLOW__CORE__DAGS_FOLDER")
    if not value:
        try:
            from airflow.configuration import conf
        except ImportError:  # used outside Airflow (scripts): no DAG folder to be beside
            return None
        value = conf.get("core", "dags_folder", fallback=None)
    return Path(value).expanduser() if value else None


def _airflow_home() -> Path | None:
    value = os.environ.get("AIRFLOW_HOME")
    return Path(value).expanduser() if value else None


def _source_checkout_include() -> Path | None:
    """``<checkout>/include`` when the package runs from ``<checkout>/plugins/mailchimp_provider``."""
    if _PACKAGE_DIR.parent.name == "plugins":
        return _PACKAGE_DIR.parent.parent / "include"
    return None


def include_dirs() -> list[Path]:
    """The candidate ``include/`` folders, in the order they are searched (duplicates removed)."""
    dags = _dags_folder()
    home = _airflow_home()
    candidates = [
        dags.parent / "include" if dags else None,
        home / "include" if home else None,
        _source_checkout_include(),
    ]
    unique: list[Path] = []
    for path in candidates:
        if path is not None and path.resolve() not in [u.resolve() for u in unique]:
            unique.append(path)
    return unique


def include_file(name: str, env: str | None = None) -> Path:
    """``include/<name>``: ``$env`` when set, else the first candidate folder that holds it.

    Raises :class:`IncludeNotFoundError` naming every path searched.
    """
    override = os.environ.get(env) if env else None
    if override:
        return Path(override).expanduser()
    searched = [folder / name for folder in include_dirs()]
    for path in searched:
        if path.is_file():
            return path
    raise IncludeNotFoundError(name, searched, env)


def sql_dir() -> Path:
    """The folder of the ``<entity>.sql`` files: ``$MAILCHIMP_SQL_DIR``, else ``include/sql``.

    Raises :class:`IncludeNotFoundError` naming every path searched.
    """
    override = os.environ.get(SQL_DIR_ENV)
    if override:
        return Path(override).expanduser()
    searched = [folder / "sql" for folder in include_dirs()]
    for path in searched:
        if path.is_dir():
            return path
    raise IncludeNotFoundError("sql/", searched, SQL_DIR_ENV)
