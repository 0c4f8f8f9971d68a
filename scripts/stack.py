"""``make stack`` / ``make stack-down``: a production-shaped Airflow on this machine, no Docker.

What runs, each as its own process group in the background (PIDs in ``.stack/pids.json``):

* the Mailchimp emulator (``mailchimp-emulator --max-concurrent 10``: an excess shows up as 429s);
* Airflow's api-server, scheduler, dag-processor and triggerer;
* two Celery workers (CeleryExecutor). The broker is the machine's Redis (127.0.0.1:6379; started
  here, and stopped by ``stack-down``, only when it is down and ``redis-server`` is installed). The
  Celery result backend and the metadata DB are databases of their own on the local PostgreSQL.

``up`` recreates the databases (metadata, Celery results, warehouse seeded with the demo data),
writes ``airflow.cfg`` (``default_deferrable = true``, ``test_connection = Enabled``), creates the
connections and the ``mailchimp_api`` pool, starts everything and returns once the API answers and
the DAGs are parsed. It writes ``.stack/env`` (``source`` it, then ``airflow dags trigger ...``).
``down`` stops exactly the process groups it started, by PID.

Every Mailchimp request of every process (workers and triggerer) takes a lease from one Redis
budget per API key (``MAILCHIMP_LIMITER_REDIS_URL``; see ``hooks/shared_limiter.py``), so the pool
may have more slots than ``10 / max_in_flight``.

Tests start their own stack in another directory, with other database names, ports and Celery
queue (``StackConfig``), so they never touch the one ``make stack`` started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API_KEY = "0123456789abcdef0123456789abcdef-us1"
SHIPPED_DAGS = ("mailchimp_audience_sync", "mailchimp_ecommerce_sync", "mailchimp_engagement_pull")
FORWARD_DAGS = SHIPPED_DAGS[:2]
ADMIN_USER = "admin"
WORKERS = ("worker-1", "worker-2")
REDIS_START = ["--bind", "127.0.0.1", "-::1", "--save", "", "--appendonly", "no"]


@dataclass
class StackConfig:
    """Where a stack lives and what it is called; the defaults are ``make stack``'s."""

    home: Path = ROOT / ".stack"
    name: str = "mc_stack"
    """Prefix of its PostgreSQL databases and the name of its Celery queue."""
    api_port: int = 0
    emulator_port: int = 0
    """0: 8080 / 8765 when free, any free port otherwise."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    pg_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432"
    worker_concurrency: int = 4
    pool_slots: int = 4
    extra_dag_folders: list[Path] = field(default_factory=list)
    """More DAG bundles beside dags/ (the tests add theirs)."""
    emulator_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    """More environment for every process of the stack (the fan-out benchmark's config folder)."""


@dataclass
class Stack:
    """A started stack: its addresses, login and processes (also saved as ``<home>/stack.json``)."""

    config: StackConfig
    api_url: str
    emulator_url: str
    password: str
    warehouse_url: str
    metadata_url: str
    pids: dict[str, int]

    @property
    def user(self) -> str:
        return ADMIN_USER

    @property
    def env_file(self) -> Path:
        return self.config.home / "env"

    def token(self) -> str:
        """A JWT for the REST API (``Authorization: Bearer ...``)."""
        reply = requests.post(
            f"{self.api_url}/auth/token", json={"username": self.user, "password": self.password}, timeout=30
        )
        reply.raise_for_status()
        return reply.json()["access_token"]


# -- small helpers -----------------------------------------------------------------------------------
def free_port(preferred: int = 0) -> int:
    """``preferred`` when nothing listens there, else a free loopback port."""
    for port in ((preferred,) if preferred else ()) + (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(_alive(pid) for pid in _group_members(pgid)) or _alive(pgid)


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _pg_admin(pg_url: str):  # -> sqlalchemy Engine, autocommit on the maintenance DB
    import sqlalchemy as sa

    return sa.create_engine(f"{pg_url}/postgres", isolation_level="AUTOCOMMIT")


def recreate_databases(pg_url: str, names: list[str]) -> None:
    """Drop (disconnecting anyone left) and create each database: a stack starts from scratch."""
    import sqlalchemy as sa

    engine = _pg_admin(pg_url)
    try:
        with engine.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def drop_databases(pg_url: str, names: list[str]) -> None:
    import sqlalchemy as sa

    engine = _pg_admin(pg_url)
    try:
        with engine.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


# -- configuration -----------------------------------------------------------------------------------
def database_names(config: StackConfig) -> dict[str, str]:
    return {kind: f"{config.name}_{kind}" for kind in ("airflow", "celery", "warehouse")}


def airflow_cfg(config: StackConfig, *, api_url: str, metadata_url: str, celery_url: str) -> str:
    """The ``airflow.cfg`` every process of the stack (and ``airflow`` CLI calls) reads."""
    from cryptography.fernet import Fernet

    home = config.home / "airflow"
    bundles = [{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(ROOT / "dags"), "refresh_interval": 30}}]
    for i, folder in enumerate(config.extra_dag_folders):
        bundles.append({"name": f"extra-{i}", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                        "kwargs": {"path": str(folder), "refresh_interval": 30}})
    sections = {
        "core": {
            "executor": "CeleryExecutor",
            "dags_folder": ROOT / "dags",
            "plugins_folder": ROOT / "plugins",
            "load_examples": "False",
            "dags_are_paused_at_creation": "True",
            "fernet_key": Fernet.generate_key().decode(),
            "auth_manager": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "simple_auth_manager_users": f"{ADMIN_USER}:admin",
            "simple_auth_manager_passwords_file": home / "passwords.json",
            "test_connection": "Enabled",
            "execution_api_server_url": f"{api_url}/execution/",
            "parallelism": 16,
        },
        "database": {"sql_alchemy_conn": metadata_url},
        "api": {"base_url": api_url, "secret_key": secrets.token_hex(16), "workers": 1},
        "api_auth": {"jwt_secret": secrets.token_hex(32)},
        "operators": {"default_deferrable": "True", "default_queue": config.name},
        "celery": {
            "broker_url": config.redis_url,
            "result_backend": celery_url,
            "worker_concurrency": config.worker_concurrency,
        },
        # The triggerer serves its logs on a port of its own (8794 by default): a free one per stack.
        "logging": {"base_log_folder": home / "logs", "logging_level": "INFO",
                    "trigger_log_server_port": free_port()},
        # A dead worker's task is noticed within ~30 s instead of 5 minutes.
        "scheduler": {"task_instance_heartbeat_timeout": 30, "task_instance_heartbeat_timeout_detection_interval": 5},
        "triggerer": {"triggerer_health_check_threshold": 20},
        "dag_processor": {"dag_bundle_config_list": json.dumps(bundles), "refresh_interval": 30},
    }
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def process_env(config: StackConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(config.home / "airflow"),
            "MAILCHIMP_LIMITER_REDIS_URL": config.redis_url,
            "PYTHONUNBUFFERED": "1",
            **config.extra_env,
        }
    )
    return env


def env_lines(stack: Stack) -> str:
    values = {
        "AIRFLOW_HOME": str(stack.config.home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.metadata_url,
        "WAREHOUSE_URL": stack.warehouse_url,
        "AIRFLOW_UI_URL": stack.api_url,
        "AIRFLOW_USER": stack.user,
        "AIRFLOW_PASSWORD": stack.password,
        "MAILCHIMP_EMULATOR_URL": stack.emulator_url,
        "MAILCHIMP_LIMITER_REDIS_URL": stack.config.redis_url,
    }
    header = "# Written by `make stack` (scripts/stack.py); `source` it to use the stack from any shell.\n"
    return header + "".join(f"export {k}='{v}'\n" for k, v in values.items())


# -- processes ---------------------------------------------------------------------------------------
def _spawn(config: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> int:
    log = (config.home / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped (or killed) as a whole, by PID
    )
    log.close()
    return proc.pid


def service_commands(config: StackConfig, api_port: int, emulator_port: int) -> dict[str, list[str]]:
    """The command line of each service, by name (``restart(name)`` starts it again)."""
    airflow = str(BIN / "airflow")
    commands = {
        "emulator": [str(BIN / "mailchimp-emulator"), "--host", "127.0.0.1", "--port", str(emulator_port),
                     "--max-concurrent", "10", "--state", str(config.home / "emulator-state.json"),
                     *config.emulator_args],
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
        "scheduler": [airflow, "scheduler"],
        "dag-processor": [airflow, "dag-processor"],
        "triggerer": [airflow, "triggerer"],
    }
    for worker in WORKERS:
        # Logs are files under the shared AIRFLOW_HOME, read by the api-server directly: no log server.
        commands[worker] = [airflow, "celery", "worker", "--queues", config.name, "--skip-serve-logs",
                            "--concurrency", str(config.worker_concurrency),
                            "--celery-hostname", f"{config.name}-{worker}@%h"]
    return commands


def _load(home: Path) -> Stack | None:
    path = home / "stack.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    cfg = raw.pop("config")
    cfg["home"] = Path(cfg["home"])
    cfg["extra_dag_folders"] = [Path(p) for p in cfg["extra_dag_folders"]]
    return Stack(config=StackConfig(**cfg), **raw)


def _save(stack: Stack) -> None:
    raw = asdict(stack)
    raw["config"]["home"] = str(stack.config.home)
    raw["config"]["extra_dag_folders"] = [str(p) for p in stack.config.extra_dag_folders]
    (stack.config.home / "stack.json").write_text(json.dumps(raw, indent=2))


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (a task process may leave its worker's group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def stop_group(pgid: int, *, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Stop a service we started: its process group, and descendants that left the group
    (Airflow's task processes do); SIGTERM first, SIGKILL what is left after ``timeout``."""
    everyone = set(process_tree(pgid)) | set(_group_members(pgid))
    if not _group_alive(pgid) and not any(_alive(p) for p in everyone):
        return
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (_group_alive(pgid) or any(_alive(p) for p in everyone)):
        time.sleep(0.2)
    for pid in everyone | set(_group_members(pgid)):
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- up / down ---------------------------------------------------------------------------------------
def _run_init(config: StackConfig, env: dict[str, str], emulator_url: str, warehouse_url: str) -> None:
    """Migrate the metadata DB, then create the connections and the pool (Airflow's own APIs)."""
    airflow = str(BIN / "airflow")
    log = config.home / "logs" / "init.log"
    with log.open("ab") as out:
        migrated = subprocess.run([airflow, "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT)
    if migrated.returncode:
        raise SystemExit(f"`airflow db migrate` failed; see {log}")
    spec = {
        "emulator_url": emulator_url,
        "warehouse_url": warehouse_url,
        "pool_slots": config.pool_slots,
    }
    with log.open("ab") as out:
        done = subprocess.run([sys.executable, "-m", "scripts.stack", "_init-airflow", json.dumps(spec)],
                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"creating the connections and the pool failed; see {log}")


def init_airflow(spec: dict) -> None:
    """(Runs inside the stack's environment.) Connections, pool, warehouse seed."""
    import sqlalchemy as sa

    from airflow.models import Connection, Pool
    from airflow.utils.session import create_session

    from mailchimp_provider.dag_defaults import POOL
    from mailchimp_provider.demo.data import seed_demo_warehouse

    emulator = urlsplit(spec["emulator_url"])
    warehouse = sa.engine.make_url(spec["warehouse_url"])
    connections = [
        # Host and port, as the connection form writes them (loopback: http://127.0.0.1:<port>/3.0).
        Connection(conn_id="mailchimp_default", conn_type="mailchimp", password=API_KEY,
                   host=emulator.hostname, port=emulator.port,
                   description="The stack's Mailchimp emulator (demo key)"),
        Connection(conn_id="warehouse_default", conn_type="postgres", host=warehouse.host, port=warehouse.port,
                   login=warehouse.username, schema=warehouse.database,
                   description="The stack's PostgreSQL warehouse (demo data)"),
    ]
    with create_session() as session:
        for conn in connections:
            session.query(Connection).filter(Connection.conn_id == conn.conn_id).delete()
            session.add(conn)
    Pool.create_or_update_pool(
        POOL, spec["pool_slots"],
        "Mailchimp API: every request also takes a lease of the 10-connection budget in Redis", include_deferred=False,
    )
    engine = sa.create_engine(spec["warehouse_url"])
    counts = seed_demo_warehouse(engine)
    engine.dispose()
    print("warehouse seeded: " + ", ".join(f"{t}: {n}" for t, n in counts.items()), flush=True)


def _ensure_redis(config: StackConfig, env: dict[str, str]) -> int | None:
    """The PID of a Redis we had to start, or None when one already answers."""
    if redis_ping(config.redis_url):
        return None
    server = "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    if server is None or not config.redis_url.startswith("redis://127.0.0.1:6379"):
        raise SystemExit(
            f"Redis does not answer at {config.redis_url}. Install it (apt-get install redis-server) "
            "or start it: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' --appendonly no"
        )
    pid = _spawn(config, "redis", [server, "--port", "6379", *REDIS_START, "--dir", str(config.home)], env)
    _wait(lambda: redis_ping(config.redis_url), 20, "Redis did not start; see logs/redis.log", config)
    return pid


def _wait(ready, timeout: float, failure: str, config: StackConfig) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{failure} (logs in {config.home / 'logs'})")


def up(config: StackConfig | None = None, *, quiet: bool = False) -> Stack:
    """Start the stack (stopping an earlier one in the same home first); return when it is usable."""
    config = config or StackConfig()
    say = (lambda *_: None) if quiet else (lambda text: print(text, flush=True))
    down(config.home, keep_databases=True, quiet=True)
    (config.home / "logs").mkdir(parents=True, exist_ok=True)
    (config.home / "airflow").mkdir(parents=True, exist_ok=True)
    for stale in ("emulator-state.json", "stack.json"):
        (config.home / stale).unlink(missing_ok=True)
    config.api_port = free_port(config.api_port or 8080)
    config.emulator_port = free_port(config.emulator_port or 8765)
    env = process_env(config)
    api_url = f"http://127.0.0.1:{config.api_port}"
    emulator_url = f"http://127.0.0.1:{config.emulator_port}"
    names = database_names(config)
    metadata_url = f"{config.pg_url}/{names['airflow']}"
    warehouse_url = f"{config.pg_url}/{names['warehouse']}"
    celery_url = "db+" + f"{config.pg_url}/{names['celery']}"

    try:
        recreate_databases(config.pg_url, list(names.values()))
    except Exception as exc:  # noqa: BLE001 - one clear message for "PostgreSQL is not there"
        raise SystemExit(
            f"PostgreSQL at {config.pg_url} is not usable ({type(exc).__name__}: {exc}). The stack needs the local "
            "PostgreSQL (user postgres, trust); start it, e.g. pg_ctlcluster <version> main start."
        ) from exc
    password = secrets.token_urlsafe(12)
    home = config.home / "airflow"
    (home / "passwords.json").write_text(json.dumps({ADMIN_USER: password}) + "\n")
    (home / "airflow.cfg").write_text(
        airflow_cfg(config, api_url=api_url, metadata_url=metadata_url, celery_url=celery_url)
    )
    pids: dict[str, int] = {}
    stack = Stack(config, api_url, emulator_url, password, warehouse_url, metadata_url, pids)
    redis_pid = _ensure_redis(config, env)
    if redis_pid:
        pids["redis"] = redis_pid
    _save(stack)
    commands = service_commands(config, config.api_port, config.emulator_port)
    pids["emulator"] = _spawn(config, "emulator", commands["emulator"], env)
    _save(stack)
    say(f"Metadata DB, connections, pool and warehouse ({names['warehouse']}, demo data) ...")
    _run_init(config, env, emulator_url, warehouse_url)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS):
        pids[name] = _spawn(config, name, commands[name], env)
        _save(stack)
    say("Started " + ", ".join(f"{n} ({p})" for n, p in pids.items()) + "; waiting for the API ...")
    wait_ready(stack, timeout=240)
    stack.env_file.write_text(env_lines(stack))
    _save(stack)
    return stack


def _api_get(stack: Stack, token: str, path: str, **params) -> dict:
    reply = requests.get(f"{stack.api_url}/api/v2{path}", params=params,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    reply.raise_for_status()
    return reply.json()


def wait_ready(stack: Stack, *, timeout: float = 240) -> None:
    """Until the API answers, the shipped DAGs are parsed, both workers and the triggerer run."""
    config = stack.config

    def services_running() -> bool:
        dead = [name for name, pid in stack.pids.items() if not _alive(pid)]
        if dead:
            raise SystemExit(f"{', '.join(dead)} exited; see {config.home / 'logs'}")
        return True

    def api_answers() -> bool:
        services_running()
        health = requests.get(f"{stack.api_url}/api/v2/monitor/health", timeout=5)
        return health.ok and health.json()["scheduler"]["status"] == "healthy"

    _wait(api_answers, timeout, "the Airflow API did not answer", config)
    token = stack.token()

    def dags_parsed() -> bool:
        services_running()
        found = {d["dag_id"] for d in _api_get(stack, token, "/dags", dag_id_pattern="mailchimp_%")["dags"]}
        return set(SHIPPED_DAGS) <= found

    _wait(dags_parsed, timeout, "the DAGs were not parsed in time (see logs/dag-processor.log)", config)

    def workers_ready() -> bool:
        services_running()
        logs = [(config.home / "logs" / f"{w}.log").read_text(errors="replace") for w in WORKERS]
        health = requests.get(f"{stack.api_url}/api/v2/monitor/health", timeout=5).json()
        return all(" ready." in text for text in logs) and health["triggerer"]["status"] == "healthy"

    _wait(workers_ready, timeout, "the Celery workers or the triggerer did not come up", config)
    for dag_id in FORWARD_DAGS:  # schedule=None: unpausing only lets triggered runs go
        requests.patch(f"{stack.api_url}/api/v2/dags/{dag_id}", json={"is_paused": False},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30).raise_for_status()


def restart(stack: Stack, name: str) -> int:
    """Start service ``name`` again (after a test killed it); returns its new PID."""
    old = stack.pids.get(name)
    if old and _group_alive(old):
        stop_group(old)
    commands = service_commands(stack.config, stack.config.api_port, stack.config.emulator_port)
    stack.pids[name] = _spawn(stack.config, name, commands[name], process_env(stack.config))
    _save(stack)
    return stack.pids[name]


def stop_service(stack: Stack, name: str) -> None:
    """Stop service ``name`` (e.g. one of the two workers) and forget its PID; ``restart`` starts it again."""
    pid = stack.pids.pop(name, None)
    if pid and _group_alive(pid):
        stop_group(pid)
    _save(stack)


def restart_worker(stack: Stack, name: str, *, timeout: float = 240) -> int:
    """Start Celery worker ``name`` again and return its PID once it consumes its queue."""
    log = stack.config.home / "logs" / f"{name}.log"
    seen = log.stat().st_size if log.exists() else 0
    pid = restart(stack, name)

    def ready() -> bool:
        if not _alive(pid):
            raise SystemExit(f"{name} exited; see {log}")
        with log.open("rb") as handle:
            handle.seek(seen)
            return b" ready." in handle.read()

    _wait(ready, timeout, f"{name} did not come up again", stack.config)
    return pid


def down(home: Path = ROOT / ".stack", *, keep_databases: bool = True, quiet: bool = False) -> list[str]:
    """Stop every process group the stack in ``home`` started (by the PIDs it recorded)."""
    stack = _load(home)
    if stack is None:
        if not quiet:
            print(f"No stack recorded in {home}.")
        return []
    stopped = []
    # Workers first (they finish or abandon their tasks), the emulator and Redis last.
    order = [*WORKERS, "triggerer", "scheduler", "dag-processor", "api-server", "emulator", "redis"]
    for name in sorted(stack.pids, key=lambda n: order.index(n) if n in order else 0):
        pid = stack.pids[name]
        if _group_alive(pid):
            stop_group(pid)
            stopped.append(f"{name} ({pid})")
    if not keep_databases:
        drop_databases(stack.config.pg_url, list(database_names(stack.config).values()))
    (home / "stack.json").unlink(missing_ok=True)
    if not quiet:
        print("Stopped " + (", ".join(stopped) if stopped else "nothing (no process was still running)") + ".")
    return stopped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.stack", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="start the stack in the background")
    start.add_argument("--api-port", type=int, default=0, help="default 8080 when free")
    start.add_argument("--emulator-port", type=int, default=0, help="default 8765 when free")
    stop = sub.add_parser("down", help="stop what `up` started")
    stop.add_argument("--drop-databases", action="store_true")
    init = sub.add_parser("_init-airflow")  # internal: runs in the stack's environment
    init.add_argument("spec")
    args = parser.parse_args(argv)
    if args.command == "up":
        stack = up(StackConfig(api_port=args.api_port, emulator_port=args.emulator_port))
        print(
            f"\nAirflow is up (CeleryExecutor, 2 workers).\n"
            f"  UI:        {stack.api_url}   login: {stack.user} / {stack.password}\n"
            f"  emulator:  {stack.emulator_url}/3.0 (admin API {stack.emulator_url}/_emulator/stats)\n"
            f"  warehouse: {stack.warehouse_url}\n"
            f"  logs:      {stack.config.home / 'logs'}\n"
            f"Use it from a shell: source {stack.env_file.relative_to(ROOT)} && "
            f".venv/bin/airflow dags trigger mailchimp_audience_sync\n"
            f"Stop it: make stack-down"
        )
    elif args.command == "down":
        down(keep_databases=not args.drop_databases)
    else:
        init_airflow(json.loads(args.spec))


if __name__ == "__main__":
    main()
