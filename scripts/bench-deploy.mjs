// Deploy overhead, instance start and the sandbox's memory (`make bench`), sandboxed and not.
// - Deploy overhead: Deploy pressed (POST) → deployment running, minus the app's own start time.
// - Instance start: the deployment's `deploying` → `running` events (sandbox, spawn, readiness).
// - Memory per idle sandbox: what bubblewrap's own two processes per instance hold (PSS), and
//   the uplink (slirp4netns) per environment.
// A measurement, not a test: nothing fails on a number.
import http from 'node:http';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../end2end/support/server.mjs';

const FIXTURE = new URL('../server/tests/fixtures/hello', import.meta.url).pathname;
const DEPLOYS = Number(process.env.BENCH_DEPLOYS || 7);
const IDLE = Number(process.env.BENCH_IDLE_SERVICES || 8);
const step = (m) => process.stderr.write(`bench-deploy: ${m}\n`);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function request(url, { method = 'GET', headers = {}, body, raw } = {}) {
  return new Promise((resolve, reject) => {
    const type = raw ? 'application/gzip' : 'application/json';
    const req = http.request(url, { method, headers: { 'content-type': type, ...headers } }, (res) => {
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

/** The app's own start: spawn it directly and wait until it answers. */
async function ownStart() {
  const times = [];
  for (let i = 0; i < 5; i++) {
    const port = 39000 + i;
    const t0 = performance.now();
    const child = spawn('python3', ['app.py'], { cwd: FIXTURE, env: { ...process.env, PORT: String(port) }, stdio: 'ignore' });
    for (;;) {
      try { await request(`http://127.0.0.1:${port}/health`); break; } catch { await sleep(5); }
    }
    times.push(performance.now() - t0);
    child.kill('SIGKILL');
  }
  return median(times);
}

/** Pss (kB) of a process, from /proc. */
function pss(pid) {
  try {
    return Number(/Pss:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))[1]);
  } catch { return 0; }
}

function childrenOf(pid) {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try { return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(pid); } catch { return false; }
  }).map(Number);
}

async function measure(mode) {
  const server = await startServer({ env: { ROUNDHOUSE_SANDBOX: mode, ROUNDHOUSE_SANDBOX_OUTBOUND: 'true' } });
  try {
    const api = (path, opts = {}) => request(`${server.url}/api/v1${path}`, opts);
    const psql = (sql) => execFileSync('psql', [server.databaseUrl, '-tAc', sql]).toString().trim();
    const email = `bench-${mode}-${Date.now()}@example.com`;
    await api('/auth/register', { method: 'POST', body: { name: 'Bench', email, password: 'bench password 123' } });
    const token = /verify\?token=(\S+)/.exec(psql(`SELECT body FROM mail_outbox WHERE to_address = '${email}'`))[1];
    await api('/auth/verify', { method: 'POST', body: { token } });
    // Room for the idle services; single-user mode deploys admins' projects only.
    psql(`UPDATE users SET plan_id = 'pro'${mode === 'off' ? ", role = 'admin'" : ''} WHERE email = '${email}'`);
    const login = (await api('/auth/login', { method: 'POST', body: { email, password: 'bench password 123' } })).json();
    const auth = { authorization: `Bearer ${login.token}` };
    const project = (await api('/projects', { method: 'POST', headers: auth, body: { name: 'bench' } })).json();
    const work = mkdtempSync(join(tmpdir(), 'rh-bench-'));
    execFileSync('tar', ['czf', join(work, 'app.tar.gz'), '-C', FIXTURE, '.']);
    const archive = readFileSync(join(work, 'app.tar.gz'));
    const addService = async (name) => {
      const s = (await api(`/projects/${project.id}/services`, { method: 'POST', headers: auth,
        body: { name, source_kind: 'upload', start_command: 'python3 app.py', memory_mb: 256 } })).json();
      const u = await api(`/services/${s.id}/source`, { method: 'POST', headers: auth, raw: archive });
      if (u.status !== 201) throw new Error(`upload: ${u.status} ${u.text}`);
      return s;
    };
    const deployAndWait = async (service) => {
      const t0 = performance.now();
      const d = (await api(`/services/${service.id}/deployments`, { method: 'POST', headers: auth })).json();
      for (;;) {
        const s = (await api(`/deployments/${d.id}`, { headers: auth })).json();
        if (s.deployment.status === 'running') {
          const at = (st) => Date.parse(s.events.find((e) => e.status === st).at);
          return { total: performance.now() - t0, start: at('running') - at('deploying'), id: d.id };
        }
        if (['failed', 'crashed'].includes(s.deployment.status)) throw new Error(`deploy failed: ${s.deployment.reason}`);
        await sleep(10);
      }
    };
    const web = await addService('web');
    const runs = [];
    for (let i = 0; i < DEPLOYS; i++) runs.push(await deployAndWait(web));
    // The first deploy also makes the environment's network: report the steady state.
    const steady = runs.slice(1);
    step(`${mode}: deploys measured`);

    // Idle services: what the sandbox itself costs per instance.
    for (let i = 0; i < IDLE; i++) await deployAndWait(await addService(`idle${i}`));
    await sleep(1000);
    const pids = psql(`SELECT i.pid FROM instances i JOIN deployments d ON d.id = i.deployment_id WHERE i.state = 'healthy'`)
      .split('\n').filter(Boolean).map(Number);
    const overhead = pids.map((outer) => {
      if (mode === 'off') return 0;
      // The instance's pid is bubblewrap's outer process; its child is the sandbox's init.
      return pss(outer) + childrenOf(outer).reduce((sum, init) => sum + pss(init), 0);
    });
    const slirp = execFileSync('sh', ['-c', 'pgrep -x slirp4netns || true']).toString().split('\n').filter(Boolean).map(Number);
    const appPss = pids.map((outer) => {
      const walk = (p) => [p, ...childrenOf(p).flatMap(walk)];
      return walk(outer).reduce((s, p) => s + pss(p), 0);
    });
    return {
      mode,
      total: median(steady.map((r) => r.total)),
      start: median(steady.map((r) => r.start)),
      overheadKb: median(overhead),
      treeKb: median(appPss),
      slirpKb: slirp.length ? median(slirp.map(pss)) : 0,
      instances: pids.length,
    };
  } finally {
    await server.stop();
  }
}

const own = await ownStart();
const results = [];
for (const mode of ['off', 'on']) results.push(await measure(mode));
console.log(`app start (own, unsandboxed): median ${own.toFixed(0)} ms`);
console.log('sandbox | deploy → running | deploy overhead | instance start (deploying → running) | bwrap per instance (PSS) | instance tree (PSS) | slirp4netns per environment (PSS)');
for (const r of results) {
  console.log(`${r.mode.padEnd(7)} | ${r.total.toFixed(0).padStart(8)} ms | ${(r.total - own).toFixed(0).padStart(8)} ms | ${r.start.toFixed(0).padStart(8)} ms | ${String(r.overheadKb).padStart(6)} kB | ${String(r.treeKb).padStart(6)} kB | ${String(r.slirpKb).padStart(6)} kB  (${r.instances} instances)`);
}
