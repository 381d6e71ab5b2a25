import { startServer } from './support/server.mjs';
import { launch } from './support/browser.mjs';
import { execFileSync } from 'node:child_process';
const server = await startServer();
const b = await launch();
const page = await b.context.newPage();
page.on('pageerror', (e) => console.log('page error', e.message));
page.on('console', (m) => { if (m.type() === 'error') console.log('console', m.text()); });
await page.goto(server.url + '/login');
await page.waitForSelector('body[data-hydrated="true"]');
await page.fill('input[name=email]', server.admin.email);
await page.fill('input[name=password]', server.admin.password);
await page.click('button[type=submit]:has-text("Sign in")');
await page.waitForURL('**/dashboard');
const sql = (q) => execFileSync('psql', [server.databaseUrl, '-v', 'ON_ERROR_STOP=1', '-qAtc', q]).toString().trim();
sql(`UPDATE users SET plan_id = 'hobby'`);
const owner = sql(`SELECT id FROM users LIMIT 1`);
const project = sql(`INSERT INTO projects (owner_id, name) VALUES ('${owner}', 'shop') RETURNING id`).split('\n')[0];
const env = sql(`INSERT INTO environments (project_id, name) VALUES ('${project}', 'production') RETURNING id`).split('\n')[0];
for (const [name, cpu, mem] of [['api', 400, 700], ['worker', 150, 300], ['db', 80, 900]]) {
  const svc = sql(`INSERT INTO services (environment_id, name, source_kind, source) VALUES ('${env}', '${name}', 'upload', '') RETURNING id`).split('\n')[0];
  sql(`INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
       SELECT '${svc}', '${owner}', '${project}', r, m, 'demo', CASE r WHEN 'cpu' THEN ${cpu} WHEN 'memory' THEN ${mem} ELSE 40000000 END * (1 + (extract(hour from m)::int % 5))
       FROM generate_series(date_trunc('month', now()), now() - interval '1 minute', interval '1 hour') m, unnest(ARRAY['cpu','memory','egress']) r`);
}
for (const p of ['/billing']) {
  await page.goto(server.url + p);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.screenshot({ path: `/tmp/shots/billing.png`, fullPage: true });
}
await b.close();
await server.stop();
