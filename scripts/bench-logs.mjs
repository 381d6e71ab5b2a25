// The log path under contention (`make bench`): SERVICES services flood their logs at once
// (LINES lines each) while one SSE follower per service reads them live, and one more service
// stays quiet: it logs one line per request, and a probe requests it every PROBE_MS.
// Measured end to end (the real server binary, its runtime, Postgres, SSE):
// - lines/s reaching the followers, in total and per service, and each service's share while
//   all of them were flooding (fair share = total / SERVICES); lines lost and out of order;
// - lines/s stored (the writer's side, polled in Postgres);
// - how long a quiet service's line takes to reach its follower during the flood.
// A measurement, not a test: nothing fails on a number (only on a broken setup).
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../end2end/support/server.mjs';

const SERVICES = Number(process.env.FLOOD_SERVICES || 10);
const LINES = Number(process.env.FLOOD_LINES || 50000);
const PROBE_MS = Number(process.env.PROBE_MS || 100);
const TIMEOUT_MS = Number(process.env.FLOOD_TIMEOUT_MS || 180_000);
const FIXTURES = new URL('../server/tests/fixtures', import.meta.url).pathname;

// What a tenant does: an ordinary user's services from uploaded archives, in the sandbox.
const SERVER_ENV = { ROUNDHOUSE_SANDBOX: 'on' };

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const step = (m) => process.stderr.write(`bench-logs: ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(url, { method = 'GET', headers = {}, body, raw } = {}) {
  const type = raw ? 'application/gzip' : 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: { 'content-type': type, ...headers } }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, text: data, json: () => JSON.parse(data) }));
    });
    req.on('error', reject);
    if (raw) req.write(raw);
    else if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

async function expectOk(reply, what) {
  const r = await reply;
  if (r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${r.text}`);
  return r.json();
}

/** A verified user on the Pro plan (room for the services): returns the Authorization header. */
async function signIn(server, api) {
  const email = `bench-logs-${Date.now()}@example.com`;
  const password = 'bench password 123';
  await api('/auth/register', { method: 'POST', body: { name: 'Bench', email, password } });
  const psql = (sql) => execFileSync('psql', [server.databaseUrl, '-tAc', sql]).toString();
  const token = /verify\?token=(\S+)/.exec(psql(`SELECT body FROM mail_outbox WHERE to_address = '${email}'`))[1];
  await api('/auth/verify', { method: 'POST', body: { token } });
  psql(`UPDATE users SET plan_id = 'pro' WHERE email = '${email}'`);
  const login = await expectOk(api('/auth/login', { method: 'POST', body: { email, password } }), 'login');
  return { authorization: `Bearer ${login.token}` };
}

/**
 * Creates `count` services running the fixture app (`GET /burst?n=<n>` prints `burst line <i>`
 * n times; every request is logged as `request: "GET <path> …"`) and deploys them. Returns
 * `[{ name, deployment, host }]` once every deployment runs. The only part of the benchmark
 * that knows where a service's code comes from: change it when source kinds change.
 */
async function deployServices(api, auth, count, port) {
  const project = await expectOk(api('/projects', { method: 'POST', headers: auth, body: { name: 'bench' } }), 'project');
  const work = mkdtempSync(join(tmpdir(), 'rh-bench-logs-'));
  execFileSync('tar', ['czf', join(work, 'app.tar.gz'), '-C', `${FIXTURES}/hello`, '.']);
  const archive = readFileSync(join(work, 'app.tar.gz'));
  rmSync(work, { recursive: true });
  const services = [];
  for (let i = 0; i < count; i++) {
    const name = `svc-${i}`;
    const service = await expectOk(api(`/projects/${project.id}/services`, { method: 'POST', headers: auth,
      body: { name, source_kind: 'upload', start_command: 'python3 app.py', memory_mb: 256 } }), `service ${name}`);
    await expectOk(api(`/services/${service.id}/source`, { method: 'POST', headers: auth, raw: archive }), `upload ${name}`);
    const d = await expectOk(api(`/services/${service.id}/deployments`, { method: 'POST', headers: auth }), `deploy ${name}`);
    services.push({ name, deployment: d.id, host: `${name}.bench.localhost:${port}` });
  }
  for (const s of services) {
    for (;;) {
      const d = (await expectOk(api(`/deployments/${s.deployment}`, { headers: auth }), 'deployment')).deployment;
      if (d.status === 'running') break;
      if (['failed', 'crashed', 'cancelled'].includes(d.status)) throw new Error(`${s.name}: deploy ${d.status}: ${d.reason}`);
      await sleep(50);
    }
  }
  return services;
}

/** Follows one deployment's logs over SSE; calls `onEvent(text)` for every event. */
function follow(url, auth, onEvent) {
  let req;
  const ready = new Promise((resolve, reject) => {
    req = http.request(url, { headers: auth }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`follow: HTTP ${res.statusCode}`));
      res.setEncoding('utf8');
      let buf = '';
      res.on('data', (chunk) => {
        resolve();
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          onEvent(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      });
    });
    req.on('error', () => {});
    req.end();
  });
  return { ready, stop: () => req.destroy() };
}

/** A flooding service's follower: distinct `burst line <i>` received, lines that came after a
 *  larger number (out of order), and when the last one arrived. */
function floodFollower(url, auth, onComplete) {
  const f = { received: 0, seen: new Set(), outOfOrder: 0, last: -1, doneAt: null };
  Object.assign(f, follow(url, auth, (ev) => {
    const m = /burst line (\d+)/.exec(ev);
    if (!m) return;
    const n = Number(m[1]);
    if (n < f.last) f.outOfOrder += 1;
    f.last = n;
    if (f.seen.has(n)) return;
    f.seen.add(n);
    f.received += 1;
    if (f.received === LINES) {
      f.doneAt = performance.now();
      f.stop();
      onComplete(f);
    }
  }));
  return f;
}

/** One psql session for many small queries (a psql per query would cost more CPU than the
 *  queries): `query(sql)` resolves to the first value of the answer. */
function psqlSession(databaseUrl) {
  const child = spawn('psql', [databaseUrl, '-tAq', '-v', 'ON_ERROR_STOP=1'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting = [];
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      waiting.shift()?.(line);
    }
  });
  return {
    query: (sql) => new Promise((resolve) => { waiting.push(resolve); child.stdin.write(`${sql};\n`); }),
    close: () => child.stdin.end(),
  };
}

/** When Postgres holds `want` burst lines stored after line id `after`: polls the newest id
 *  (cheap), and counts only once there are enough rows. */
async function storedAt(db, after, want, until) {
  while (!until()) {
    const newest = Number(await db.query('SELECT coalesce(max(id), 0) FROM deployment_logs'));
    if (newest - after >= want && Number(await db.query(`SELECT count(*) FROM deployment_logs WHERE id > ${after} AND line LIKE 'burst line %'`)) >= want) {
      return performance.now();
    }
    await sleep(100);
  }
  return null;
}

const server = await startServer({ env: SERVER_ENV });
try {
  const port = new URL(server.url).port;
  const api = (path, opts = {}) => request(`${server.url}/api/v1${path}`, opts);
  const logsUrl = (s) => `${server.url}/api/v1/deployments/${s.deployment}/logs?follow=true`;
  const auth = await signIn(server, api);
  step('signed in');
  const services = await deployServices(api, auth, SERVICES + 1, port);
  const flooders = services.slice(0, SERVICES);
  const quiet = services[SERVICES];
  step(`${SERVICES} flooding services and a quiet one running`);

  // The fairness window: the lines each had received when the first one completed.
  let windowEnd = null;
  let windowCounts = null;
  let finished = 0;
  let allDone;
  const done = new Promise((r) => { allDone = r; });
  const followers = flooders.map((s) => floodFollower(logsUrl(s), auth, (f) => {
    if (!windowCounts) {
      windowEnd = f.doneAt;
      windowCounts = followers.map((o) => o.received);
    }
    finished += 1;
    if (finished === SERVICES) allDone();
  }));
  const probesSent = new Map();
  const probeLatencies = [];
  const quietFollower = follow(logsUrl(quiet), auth, (ev) => {
    const m = /probe=(\d+)/.exec(ev);
    const sent = m && probesSent.get(Number(m[1]));
    if (sent) probeLatencies.push(performance.now() - sent);
  });
  await Promise.all([...followers, quietFollower].map((f) => f.ready));
  const startId = Number(execFileSync('psql', [server.databaseUrl, '-tAc', 'SELECT coalesce(max(id), 0) FROM deployment_logs']).toString());
  await sleep(300);

  step(`flooding: ${SERVICES} × ${LINES} lines`);
  const t0 = performance.now();
  let flooding = true;
  const db = psqlSession(server.databaseUrl);
  const stored = storedAt(db, startId, SERVICES * LINES, () => !flooding);
  const bursts = flooders.map((s) => request(`${server.url}/burst?n=${LINES}`, { headers: { host: s.host } }));
  (async () => {
    for (let k = 0; flooding; k++) {
      probesSent.set(k, performance.now());
      request(`${server.url}/?probe=${k}`, { headers: { host: quiet.host } }).catch(() => {});
      await sleep(PROBE_MS);
    }
  })();
  const timedOut = await Promise.race([done.then(() => false), sleep(TIMEOUT_MS).then(() => true)]);
  const end = performance.now();
  const storedEnd = await Promise.race([stored, sleep(1000).then(() => null)]);
  flooding = false;
  await sleep(1000); // the last probes' lines
  await Promise.allSettled(bursts);
  for (const f of [...followers, quietFollower]) f.stop();
  db.close();

  const secs = (ms) => ms / 1000;
  const fmt = (n) => Math.round(n).toLocaleString('en');
  const total = followers.reduce((a, f) => a + f.received, 0);
  const lastAt = Math.max(...followers.map((f) => f.doneAt ?? end));
  const window = windowCounts ?? followers.map((f) => f.received);
  const windowSecs = secs((windowEnd ?? end) - t0);
  const fair = window.reduce((a, n) => a + n, 0) / SERVICES;
  const shares = window.map((n) => n / fair);
  const lost = followers.reduce((a, f) => a + (LINES - f.received), 0);
  const outOfOrder = followers.reduce((a, f) => a + f.outOfOrder, 0);
  const sorted = [...probeLatencies].sort((a, b) => a - b);
  const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))].toFixed(0) : '–');

  const pad = (s, n) => String(s).padStart(n);
  console.log(`\nLog path under contention: ${SERVICES} services × ${fmt(LINES)} lines, one SSE follower each${timedOut ? ` (TIMED OUT after ${TIMEOUT_MS / 1000} s)` : ''}`);
  console.log(`${'service'.padEnd(10)}${pad('received', 10)}${pad('lost', 7)}${pad('order', 7)}${pad('lines/s', 10)}${pad('window', 9)}${pad('share', 8)}`);
  followers.forEach((f, i) => {
    const rate = f.received / secs((f.doneAt ?? end) - t0);
    console.log(`${flooders[i].name.padEnd(10)}${pad(f.received, 10)}${pad(LINES - f.received, 7)}${pad(f.outOfOrder, 7)}${pad(fmt(rate), 10)}${pad(window[i], 9)}${pad(shares[i].toFixed(2) + '×', 8)}`);
  });
  console.log(`reached followers: ${fmt(total)} lines in ${secs(lastAt - t0).toFixed(2)} s = ${fmt(total / secs(lastAt - t0))} lines/s`);
  console.log(`stored (writer):   ${storedEnd ? `${fmt(SERVICES * LINES)} lines in ${secs(storedEnd - t0).toFixed(2)} s = ${fmt((SERVICES * LINES) / secs(storedEnd - t0))} lines/s` : 'not all'}`);
  console.log(`fair share while all flooded (${windowSecs.toFixed(2)} s): ${fmt(fair / windowSecs)} lines/s; min ${Math.min(...shares).toFixed(2)}×, max ${Math.max(...shares).toFixed(2)}× of it`);
  console.log(`quiet service: ${probeLatencies.length}/${probesSent.size} probe lines followed, latency p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms`);
  console.log(`lost: ${lost}, out of order: ${outOfOrder}`);
} finally {
  agent.destroy();
  await server.stop();
}
