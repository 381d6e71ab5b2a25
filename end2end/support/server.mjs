// Starts the real Roundhouse binary on a free port with a brand-new database, and stops it.
import { spawn, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';

const ROOT = resolve(import.meta.dirname, '..', '..');

function freePort() {
  return new Promise((ok, fail) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

function psql(base, sql) {
  execFileSync('psql', [`${base}/postgres`, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: 'pipe' });
}

/** `env`: variables for this server on top of the defaults (e.g. `{ ROUNDHOUSE_SANDBOX: 'off' }`). */
export async function startServer({ env = {} } = {}) {
  const base = process.env.DATABASE_URL_BASE;
  if (!base) throw new Error('DATABASE_URL_BASE is not set: run the browser tests with `make test`');
  const bin = process.env.BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'debug', 'roundhouse');
  const dbName = `roundhouse_e2e_${process.pid}_${Date.now()}`;
  psql(base, `CREATE DATABASE ${dbName}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'roundhouse-e2e-'));
  // Sandboxed services' uids pass through (not list) the data folder to reach their own.
  chmodSync(dataDir, 0o711);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const site = join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'site');
  const child = spawn(bin, [], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: `${base}/${dbName}`,
      ROUNDHOUSE_ADDR: `127.0.0.1:${port}`,
      ROUNDHOUSE_DATA_DIR: dataDir,
      ROUNDHOUSE_ENV: 'dev',
      // The journeys register many accounts from 127.0.0.1.
      ROUNDHOUSE_ACCOUNT_ACTIONS_PER_IP_PER_HOUR: '1000',
      // No internet here: services need no uplink in the browser tests.
      ROUNDHOUSE_SANDBOX_OUTBOUND: process.env.ROUNDHOUSE_SANDBOX_OUTBOUND || 'false',
      LEPTOS_OUTPUT_NAME: 'roundhouse',
      LEPTOS_SITE_ROOT: site,
      LEPTOS_SITE_PKG_DIR: 'pkg',
      RUST_LOG: process.env.RUST_LOG || 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited early:\n${output}`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      // Never leave a server behind (it would keep this process and its database alive).
      child.kill('SIGKILL');
      throw new Error(`server not ready after 60 s:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const email = /email:\s+(\S+)/.exec(output)?.[1];
  const password = /password:\s+(\S+)/.exec(output)?.[1];
  return {
    url,
    databaseUrl: `${base}/${dbName}`,
    admin: { email, password },
    output: () => output,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      // Services outlive the platform process (the next one adopts them): a test that ends
      // for good takes them down.
      execFileSync(bin, ['runtime', 'destroy', dataDir]);
      psql(base, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
