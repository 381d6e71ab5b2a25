"""PostgreSQL through the psql client (no packages to install)."""
import os
import subprocess


def sql(statement, *args):
    """Runs one statement with psql variables :'v1', :'v2'… bound to args; returns the rows."""
    cmd = ["psql", os.environ["DATABASE_URL"], "-v", "ON_ERROR_STOP=1", "-tAq"]
    for i, a in enumerate(args, 1):
        cmd += ["-v", f"v{i}={a}"]
    out = subprocess.run(cmd, input=statement, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return [line.split("|") for line in out.stdout.splitlines() if line]


def ensure_schema():
    sql("CREATE TABLE IF NOT EXISTS jobs_done (id serial PRIMARY KEY, job text NOT NULL, done_at timestamptz NOT NULL DEFAULT now())")
