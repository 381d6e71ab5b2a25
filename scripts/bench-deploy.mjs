// Deploy overhead and log throughput of the local runtime (`make bench`).
// Deploy overhead: Deploy pressed (POST) → deployment running, minus the app's own start time.
// Log throughput: a burst of N lines printed by one service, received over the SSE log stream.
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { startServer } from '../end2end/support/server.mjs';

const N = Number(process.env.BURST_LINES || 50000);
const FIXTURE = new URL('../server/tests/fixtures/hello', import.meta.url).pathname;
const base = process.env.DATABASE_URL_BASE;

function request(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, text: data, json: () => JSON.parse(data) }));
    });
    req.on('error', reject);
    if (body) req.write(JSON.stringify(body));
    req.end();
  });
}

const server = await startServer();
const step = (m) => process.stderr.write(`bench: ${m}\n`);
try {
  const api = (path, opts = {}) => request(`${server.url}/api/v1${path}`, opts);
  const email = `bench-${Date.now()}@example.com`;
  await api('/auth/register', { method: 'POST', body: { name: 'Bench', email, password: 'bench password 123' } });
  const db = server.databaseUrl;
  const mail = execFileSync('psql', [db, '-tAc', `SELECT body FROM mail_outbox WHERE to_address = '${email}'`]).toString();
  const token = /verify\?token=(\S+)/.exec(mail)[1];
  await api('/auth/verify', { method: 'POST', body: { token } });
  const login = (await api('/auth/login', { method: 'POST', body: { email, password: 'bench password 123' } })).json();
  step('signed in');
  const auth = { authorization: `Bearer ${login.token}` };
  const project = (await api('/projects', { method: 'POST', headers: auth, body: { name: 'bench' } })).json();
  const service = (await api(`/projects/${project.id}/services`, { method: 'POST', headers: auth,
    body: { name: 'web', source_kind: 'directory', source: FIXTURE, start_command: 'python3 app.py' } })).json();

  // The app's own start time: start it directly and wait until it listens.
  const own = [];
  for (let i = 0; i < 5; i++) {
    const port = 39000 + i;
    const t0 = performance.now();
    const child = spawn('python3', ['app.py'], { cwd: FIXTURE, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
    for (;;) {
      try { await request(`http://127.0.0.1:${port}/health`); break; } catch { await new Promise((r) => setTimeout(r, 5)); }
    }
    own.push(performance.now() - t0);
    child.kill('SIGKILL');
  }

  const total = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const d = (await api(`/services/${service.id}/deployments`, { method: 'POST', headers: auth })).json();
    for (;;) {
      const s = (await api(`/deployments/${d.id}`, { headers: auth })).json();
      if (s.deployment.status === 'running') break;
      if (['failed', 'crashed'].includes(s.deployment.status)) throw new Error(`deploy failed: ${s.deployment.reason}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    total.push(performance.now() - t0);
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const deployments = (await api(`/services/${service.id}/deployments`, { headers: auth })).json();
  const live = deployments.find((d) => d.status === 'running');

  step('deploys measured');
  // Burst: follow the logs, then make the app print N lines.
  const received = new Set();
  let t0;
  const done = new Promise((resolve, reject) => {
    const req = http.request(`${server.url}/api/v1/deployments/${live.id}/logs?follow=true`, { headers: auth }, (res) => {
      let buf = '';
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const m = /burst line (\d+)/.exec(ev);
          if (m) received.add(Number(m[1]));
          if (received.size === N) { resolve(performance.now() - t0); req.destroy(); return; }
        }
      });
    });
    req.on('error', (e) => { if (received.size < N) reject(e); });
    req.end();
    setTimeout(() => reject(new Error(`only ${received.size} of ${N} lines after 120 s`)), 120_000);
  });
  await new Promise((r) => setTimeout(r, 300));
  t0 = performance.now();
  const host = `web.bench.localhost:${new URL(server.url).port}`;
  await request(`${server.url}/burst?n=${N}`, { headers: { host } });
  const elapsed = await done;

  console.log(`app start (own):      median ${median(own).toFixed(0)} ms`);
  console.log(`deploy → running:     median ${median(total).toFixed(0)} ms (5 deploys)`);
  console.log(`deploy overhead:      median ${(median(total) - median(own)).toFixed(0)} ms`);
  console.log(`log burst:            ${N} lines in ${elapsed.toFixed(0)} ms = ${Math.round(N / (elapsed / 1000))} lines/s, ${received.size}/${N} received`);
} finally {
  await server.stop();
}
