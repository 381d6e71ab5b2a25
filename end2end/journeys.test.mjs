// Browser journeys in headless Chromium against the real server and a fresh database.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './support/server.mjs';
import { launch } from './support/browser.mjs';

const SHOTS = new URL('./screenshots/', import.meta.url).pathname;
let server;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A fresh page (own cookies) that fails the test on any browser-side error. */
async function newPage() {
  const page = await browser.context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  // Chromium logs every 4xx answer as a console error. A refused form (a server function
  // under /api/ answering 4xx) is expected and checked by the test itself; any other (a
  // missing asset, a page) is an error.
  page.refusals = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url || '';
    if (/status of 4\d\d/.test(m.text()) && new URL(url, server.url).pathname.startsWith('/api/')) page.refusals.push(url);
    else page.errors.push(`${m.text()} ${url}`);
  });
  return page;
}

async function goto(page, path) {
  const res = await page.goto(server.url + path);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 15_000 });
  return res;
}

async function signOutEverywhere() {
  await browser.context.clearCookies();
}

async function register(page, { name, email, password }) {
  await goto(page, '/register');
  await page.fill('input[name=name]', name);
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]:has-text("Create account")');
  await page.waitForURL('**/dashboard');
}

async function signIn(page, email, password) {
  await goto(page, '/login');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]:has-text("Sign in")');
}

async function verifyFromOutbox(page, email) {
  await goto(page, '/dev/mail');
  const link = page.locator(`[data-testid=mail]:has-text("${email}") a[href*="/verify?token="]`).first();
  const href = await link.getAttribute('href');
  assert.ok(href, 'the verification mail has a link');
  await goto(page, new URL(href).pathname + new URL(href).search);
  await page.click('button:has-text("Confirm my email address")');
  await page.waitForSelector('[data-testid=verified]');
}

test('register, verify, create a project, see it, sign out and back in', async () => {
  await signOutEverywhere();
  const page = await newPage();
  const email = `ada-${Date.now()}@example.com`;
  const password = 'correct horse battery';
  await register(page, { name: 'Ada', email, password });

  // Unverified: the dashboard says so, and creating a project is refused with that reason.
  await page.waitForSelector('text=Confirm your email address to create projects');
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.fill('input[name=name]', 'too-early');
  await page.click('button:has-text("Create project")');
  await page.waitForSelector('text=Verify your email address before creating projects');
  assert.equal(await page.locator('[data-testid=project-list] li').count(), 0, 'no project was created');
  assert.equal(page.refusals.length, 1, 'the one refused call');
  await verifyFromOutbox(page, email);

  await goto(page, '/dashboard');
  await page.fill('input[name=name]', 'shop');
  await page.fill('input[name=description]', 'The web shop');
  await page.click('button:has-text("Create project")');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  assert.equal(await page.textContent('[data-testid=project-name]'), 'shop');
  assert.match(await page.textContent('[data-testid=environments]'), /production/);
  await page.screenshot({ path: `${SHOTS}project.png`, fullPage: true });

  // A duplicate name gets a specific error next to the field.
  await goto(page, '/dashboard');
  await page.fill('input[name=name]', 'SHOP');
  await page.click('button:has-text("Create project")');
  await page.waitForSelector('text=You already have a project named "SHOP".');
  assert.equal(await page.locator('[data-testid=project-list] li').count(), 1);
  await page.screenshot({ path: `${SHOTS}dashboard.png`, fullPage: true });

  await page.click('[data-testid=sign-out]');
  await page.waitForURL(server.url + '/');
  await page.waitForSelector('a:has-text("Sign in")');
  const res = await page.goto(server.url + '/dashboard');
  assert.match(page.url(), /\/login\?next=\/dashboard$/, 'signed out, the dashboard asks to sign in');
  assert.equal(res.status(), 200);

  await page.waitForSelector('body[data-hydrated="true"]');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]:has-text("Sign in")');
  await page.waitForURL('**/dashboard');
  await page.waitForSelector('[data-testid=project-list] >> text=shop');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a wrong password is refused with a message and no session', async () => {
  await signOutEverywhere();
  const page = await newPage();
  await signIn(page, server.admin.email, 'definitely-not-it');
  await page.waitForSelector('text=That email and password do not match an account.');
  assert.match(page.url(), /\/login/);
  const cookies = await browser.context.cookies(server.url);
  assert.deepEqual(cookies.filter((c) => c.name === 'rh_session'), [], 'no session cookie');
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  assert.equal(me, 401, 'and no session behind it');
  await page.screenshot({ path: `${SHOTS}login-error.png` });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an admin suspends a user, who then cannot sign in', async () => {
  await signOutEverywhere();
  const page = await newPage();
  const email = `bob-${Date.now()}@example.com`;
  const password = 'bobs password 123';
  await register(page, { name: 'Bob', email, password });
  await signOutEverywhere();

  assert.ok(server.admin.email && server.admin.password, 'the server printed the dev admin credentials');
  await signIn(page, server.admin.email, server.admin.password);
  await page.waitForURL('**/dashboard');
  await goto(page, `/admin?q=${encodeURIComponent(email)}`);
  const row = page.locator(`tr[data-email="${email}"]`);
  await row.locator('button:has-text("Suspend")').click();
  await row.locator('text=suspended').waitFor();
  await page.screenshot({ path: `${SHOTS}admin.png`, fullPage: true });
  await signOutEverywhere();

  await signIn(page, email, password);
  await page.waitForSelector('text=This account is suspended');
  assert.match(page.url(), /\/login/);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a signed-in non-admin gets 403 on /admin', async () => {
  await signOutEverywhere();
  const page = await newPage();
  await register(page, { name: 'Cy', email: `cy-${Date.now()}@example.com`, password: 'cys password 123' });
  const res = await page.goto(server.url + '/admin');
  assert.equal(res.status(), 403);
  await page.waitForSelector('text=This page is for administrators.');
  assert.deepEqual(page.errors.filter((e) => !/status of 403/.test(e)), [], 'nothing failed but the refusal itself');
  await page.close();
});

test('sign-in works without JavaScript (the form posts)', async () => {
  await signOutEverywhere();
  // Blocking the bundle keeps the page as the server rendered it: the form posts natively.
  const page = await newPage();
  await page.route('**/pkg/roundhouse*.js', (route) => route.abort());
  await page.goto(server.url + '/login?next=/account');
  // A wrong password comes back to the form with the error said, and `next` kept.
  await page.fill('input[name=email]', server.admin.email);
  await page.fill('input[name=password]', 'not the password at all');
  await page.click('button[type=submit]:has-text("Sign in")');
  await page.waitForSelector('[role=alert]:has-text("do not match an account")');
  await page.screenshot({ path: `${SHOTS}login-no-js-error.png`, fullPage: true });
  assert.match(page.url(), /next=%2Faccount|next=\/account/);
  await page.fill('input[name=email]', server.admin.email);
  await page.fill('input[name=password]', server.admin.password);
  await page.click('button[type=submit]:has-text("Sign in")');
  await page.waitForURL('**/account');
  await page.waitForSelector(`text=${server.admin.email}`);
  assert.equal(await page.getAttribute('body', 'data-hydrated'), null, 'the page never hydrated');
  assert.deepEqual(page.errors.filter((e) => !/roundhouse(-[0-9a-f]+)?\.js/.test(e)), [], 'nothing failed but the blocked bundle');
  await page.close();
});

test('a visitor finds a template, registers from its Deploy button, deploys it and opens its URL', async () => {
  await signOutEverywhere();
  const page = await newPage();
  await goto(page, '/templates');
  await page.fill('input[name=q]', 'static');
  await page.click('button:has-text("Apply")');
  await page.waitForURL(/q=static/);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=template-list] li').length === 1);
  await page.click('[data-testid=template-list] >> text=Static site');
  await page.waitForURL('**/templates/static-site');
  await page.waitForSelector('[data-testid=template-graph] [data-node=web]');
  await page.screenshot({ path: `${SHOTS}template.png`, fullPage: true });
  await page.click('[data-testid=deploy-template]');
  await page.waitForURL(/\/register\?next=\/templates\/static-site\/deploy/);

  // Register, confirm the email, and come back to the deploy.
  const email = `gus-${Date.now()}@example.com`;
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.fill('input[name=name]', 'Gus');
  await page.fill('input[name=email]', email);
  await page.fill('input[name=password]', 'gus password 123');
  await page.click('button[type=submit]:has-text("Create account")');
  await page.waitForURL((u) => u.pathname === '/templates/static-site/deploy');
  await verifyFromOutbox(page, email);
  await goto(page, '/templates/static-site/deploy');
  await page.fill('input[name=project_name]', 'site');
  await page.screenshot({ path: `${SHOTS}template-deploy.png`, fullPage: true });
  await page.click('[data-testid=deploy-form] button[type=submit]');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('[data-service=web] [data-testid=status]:has-text("running")').waitFor({ timeout: 60_000 });

  const app = await newPage();
  const port = new URL(server.url).port;
  await app.goto(`http://web.site.localhost:${port}/`);
  assert.match(await app.textContent('h1'), /Your static site is live/);
  await app.close();

  await goto(page, '/pricing');
  assert.equal(await page.locator('[data-testid=plan]').count(), 3);
  await page.screenshot({ path: `${SHOTS}pricing.png`, fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an admin writes a template, publishes it, and its deploy shows the stack on the canvas with its arrows', async () => {
  await signOutEverywhere();
  const page = await newPage();
  await signIn(page, server.admin.email, server.admin.password);
  await page.waitForURL('**/dashboard');
  await goto(page, '/admin/templates/new');
  const editor = page.locator('[data-testid=template-editor] textarea[name=source]');
  await editor.fill('version = 1\n[template\n');
  await page.click('[data-testid=template-editor] button[type=submit]');
  await page.locator('[data-testid=save-error]:has-text("This is not a template file")').waitFor();
  const slug = `duo-${Date.now()}`;
  await editor.fill([
    'version = 1',
    '[template]',
    `slug = "${slug}"`,
    'name = "Duo"',
    'summary = "A site and its database."',
    'category = "starter"',
    '[[services]]',
    'name = "db"',
    'source = { kind = "database", engine = "postgres" }',
    'memory_mb = 128',
    '[[services]]',
    'name = "web"',
    'source = { kind = "sample", name = "static-site" }',
    'memory_mb = 128',
    'port = 8080',
    'depends_on = [{ service = "db", condition = "healthy" }]',
    'env = { DATABASE_URL = "${{db.DATABASE_URL}}" }',
    '',
  ].join('\n'));
  await page.click('[data-testid=template-editor] button[type=submit]');
  await page.waitForURL(`**/admin/templates/${slug}`);
  await page.locator('[data-testid=versions] >> text=v1 (current)').waitFor();
  await page.screenshot({ path: `${SHOTS}admin-template-editor.png`, fullPage: true });
  await goto(page, '/admin/templates');
  const row = page.locator(`tr[data-slug="${slug}"]`);
  await row.locator('button:has-text("Publish")').click();
  await row.locator('text=published').waitFor();
  await page.screenshot({ path: `${SHOTS}admin-templates.png`, fullPage: true });

  await goto(page, `/templates/${slug}/deploy`);
  await page.fill('input[name=project_name]', 'duo');
  await page.click('[data-testid=deploy-form] button[type=submit]');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('[data-testid=canvas] [data-edge="web uses db"]').waitFor({ state: 'attached' });
  await page.locator('[data-testid=stack-progress]:has-text("2 of 2 running")').waitFor({ timeout: 90_000 });
  // The cards are drawn (and are links) after live updates re-rendered the canvas in the browser.
  for (const name of ['db', 'web']) await page.locator(`[data-testid=canvas] a[data-node=${name}]`).waitFor();
  await page.locator('[data-testid=canvas] a[data-node=web] .dot-running').waitFor();
  await page.screenshot({ path: `${SHOTS}stack.png`, fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('add a service, set variables, see secrets masked and reveal one', async () => {
  await signOutEverywhere();
  const page = await newPage();
  const email = `dee-${Date.now()}@example.com`;
  await register(page, { name: 'Dee', email, password: 'dees password 123' });
  await verifyFromOutbox(page, email);
  await goto(page, '/dashboard');
  await page.fill('input[name=name]', 'api');
  await page.click('button:has-text("Create project")');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');

  await page.fill('form:has(select[name=source_kind]) input[name=name]', 'web');
  await page.selectOption('select[name=source_kind]', 'image');
  await page.fill('input[name=source]', 'nginx:1.27');
  await page.fill('input[name=port]', '8080');
  await page.click('button:has-text("Add service")');
  await page.waitForURL(/\/services\/[0-9a-f-]{36}$/);
  assert.equal(await page.textContent('[data-testid=service-name]'), 'web');
  await page.waitForSelector('body[data-hydrated="true"]');

  const saveVar = async (name, value, secret = false) => {
    await page.fill('form:has(input[name=value]) input[name=name]', name);
    await page.fill('input[name=value]', value);
    if (secret) await page.check('input[name=secret]');
    await page.click('button:has-text("Save variable")');
  };
  await saveVar('NODE_ENV', 'production');
  await page.waitForSelector('tr[data-variable=NODE_ENV] >> text=production');
  await saveVar('SESSION_SECRET', '${{secret(24)}}');
  const row = page.locator('tr[data-variable=SESSION_SECRET]');
  await row.locator('text=••••••').waitFor();
  await row.locator('button:has-text("Reveal")').click();
  const revealed = await row.locator('[data-testid=revealed]').textContent();
  assert.match(revealed, /^[A-Za-z0-9]{24}$/, 'the generated secret, revealed');

  await saveVar('BROKEN', '${{oops');
  await page.waitForSelector('text=is never closed');
  assert.equal(await page.locator('tr[data-variable=BROKEN]').count(), 0);
  await page.screenshot({ path: `${SHOTS}service.png`, fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('add a service, upload its code, deploy it, watch live logs and open its URL', async () => {
  await signOutEverywhere();
  const page = await newPage();
  const email = `fay-${Date.now()}@example.com`;
  await register(page, { name: 'Fay', email, password: 'fays password 123' });
  await verifyFromOutbox(page, email);
  await goto(page, '/dashboard');
  await page.fill('input[name=name]', 'demo');
  await page.click('button:has-text("Create project")');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');

  const fixture = new URL('../server/tests/fixtures/hello', import.meta.url).pathname;
  await page.fill('form:has(select[name=source_kind]) input[name=name]', 'web');
  await page.selectOption('select[name=source_kind]', 'upload');
  await page.click('button:has-text("Add service")');
  await page.waitForURL(/\/services\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.waitForSelector('text=Not deployed yet');
  await page.waitForSelector('[data-testid=no-archive]');

  // Nothing to deploy yet: Deploy says what is missing.
  await page.click('[data-testid=deploy]');
  await page.locator('text=Upload an archive of your code first').waitFor();

  // Something that is not an archive is refused with the reason; then the real one is taken.
  const work = mkdtempSync(join(tmpdir(), 'rh-e2e-upload-'));
  writeFileSync(join(work, 'notes.tar.gz'), 'just text');
  await page.setInputFiles('input[name=archive]', join(work, 'notes.tar.gz'));
  await page.click('button:has-text("Upload")');
  await page.locator('[data-testid=upload-error] >> text=not a gzip-compressed tar file').waitFor();
  execFileSync('tar', ['czf', join(work, 'app.tar.gz'), '-C', fixture, '.']);
  await page.setInputFiles('input[name=archive]', join(work, 'app.tar.gz'));
  await page.click('button:has-text("Upload")');
  await page.locator('[data-testid=upload-ok]').waitFor();
  await page.locator('[data-testid=current-archive]').waitFor();
  await page.screenshot({ path: `${SHOTS}service-upload.png`, fullPage: true });

  await page.click('[data-testid=deploy]');
  await page.waitForURL(/\/deployments\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  // Live: the app's own output arrives, and the page's status follows the deployment to running.
  await page.locator('[data-testid=logs] >> text=hello v1 starting').waitFor({ timeout: 60_000 });
  await page.locator('h1 [data-testid=status]:has-text("running")').waitFor({ timeout: 60_000 });
  assert.equal(await page.textContent('[data-testid=log-state]'), 'live');
  const url = await page.getAttribute('[data-testid=public-url]', 'href');
  assert.match(url, /^http:\/\/web\.demo\.localhost:\d+$/);
  await page.screenshot({ path: `${SHOTS}deployment.png`, fullPage: true });

  // Search filters the lines shown.
  await page.fill('input[aria-label="Search logs"]', 'on stderr');
  await page.locator('[data-testid=logs] >> text=a line on stderr').waitFor();
  assert.equal(await page.locator('[data-testid=logs] >> text=hello v1 starting').count(), 0);

  const app = await newPage();
  await app.goto(url);
  assert.match(await app.textContent('body'), /^hello v1 from web boot [0-9a-f]{8}$/);
  await app.close();

  // The project page shows the service running.
  await page.click('nav >> text=demo');
  await page.locator('[data-service=web] [data-testid=status]:has-text("running")').waitFor();
  await page.screenshot({ path: `${SHOTS}project.png`, fullPage: true });

  // A variable that refers to itself: Deploy is refused with the cycle, and nothing is queued.
  await page.click('[data-service=web] a');
  await page.waitForURL(/\/services\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.fill('form:has(input[name=value]) input[name=name]', 'LOOP');
  await page.fill('input[name=value]', 'x${{LOOP}}');
  await page.click('button:has-text("Save variable")');
  await page.waitForSelector('tr[data-variable=LOOP]');
  await page.click('[data-testid=deploy]');
  await page.locator('text=Reference cycle: web.LOOP → web.LOOP').waitFor();
  assert.equal(await page.locator('[data-testid=deployments] li').count(), 1, 'no deployment was queued');
  await page.screenshot({ path: `${SHOTS}deploy-refused.png`, fullPage: true });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('upgrade, set a hard limit, get stopped when the bill reaches it, raise it and be back', async () => {
  await signOutEverywhere();
  const page = await newPage();
  const email = `ella-${Date.now()}@example.com`;
  await register(page, { name: 'Ella', email, password: 'ellas password 123' });
  await verifyFromOutbox(page, email);
  await goto(page, '/templates/static-site/deploy');
  await page.fill('input[name=project_name]', 'ellas-shop');
  await page.click('[data-testid=deploy-form] button[type=submit]');
  await page.waitForURL(/\/projects\/[0-9a-f-]{36}$/);
  await page.waitForSelector('body[data-hydrated="true"]');
  await page.locator('[data-service=web] [data-testid=status]:has-text("running")').waitFor({ timeout: 60_000 });
  const project = new URL(page.url()).pathname.split('/').pop();

  // Upgrade on the local ledger, then set a $10 hard limit.
  await goto(page, '/billing');
  await page.click('[data-testid=change-plan] button[data-plan=hobby]');
  await page.locator('[data-testid=plan]:has-text("Hobby")').waitFor();
  await page.fill('input[name=hard_limit]', '10');
  await page.click('button:has-text("Save limits")');
  await page.locator('input[name=hard_limit][value="10.00"]').waitFor();

  // Usage grows: 240 GB out is $12, a $12 bill on Hobby ($5 including $5 of usage).
  execFileSync('psql', [server.databaseUrl, '-v', 'ON_ERROR_STOP=1', '-qc', `
    INSERT INTO usage_records (service_id, owner_id, project_id, resource, minute, source, quantity)
    SELECT s.id, p.owner_id, p.id, 'egress', date_trunc('minute', now()), 'journey', 240000000000
    FROM services s JOIN environments e ON e.id = s.environment_id JOIN projects p ON p.id = e.project_id
    WHERE p.id = '${project}'`]);
  // The leader applies limits every 20 s: the services stop and the page says why.
  for (let i = 0; ; i++) {
    await goto(page, '/billing');
    if (await page.locator('[data-testid=limit-stopped]').count()) break;
    assert.ok(i < 30, 'the hard limit did not stop the services');
    await page.waitForTimeout(2_000);
  }
  await page.locator('[data-testid=usage-so-far]:has-text("$12.00")').waitFor();
  await page.screenshot({ path: `${SHOTS}billing-stopped.png`, fullPage: true });
  await goto(page, `/projects/${project}`);
  await page.locator('[data-service=web] [data-testid=status]:has-text("removed")').waitFor();

  // Raised past the bill: the service starts again by itself.
  await goto(page, '/billing');
  await page.fill('input[name=hard_limit]', '20');
  await page.click('button:has-text("Save limits")');
  await page.locator('[data-testid=limit-stopped]').waitFor({ state: 'detached' });
  await goto(page, `/projects/${project}`);
  // Live: the page hears the new deployment go from queued to running.
  await page.locator('[data-service=web] [data-testid=status]:has-text("running")').waitFor({ timeout: 60_000 });
  const app = await newPage();
  await app.goto(`http://web.ellas-shop.localhost:${new URL(server.url).port}/`);
  assert.match(await app.textContent('h1'), /Your static site is live/);
  await app.close();
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('an admin finds a user, opens their deployment and its logs, suspends them and sees their service stop', async () => {
  await signOutEverywhere();
  // A tenant with a running service, set up through the REST API as a CLI would.
  const email = `gil-${Date.now()}@example.com`;
  const api = async (method, path, token, body, type = 'application/json') => {
    const res = await fetch(`${server.url}/api/v1${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': type } : {}) },
      body: body === undefined ? undefined : type === 'application/json' ? JSON.stringify(body) : body,
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  };
  assert.equal((await api('POST', '/auth/register', null, { name: 'Gil', email, password: 'gils password 123' })).status, 201);
  execFileSync('psql', [server.databaseUrl, '-v', 'ON_ERROR_STOP=1', '-qc', `UPDATE users SET email_verified_at = now() WHERE email = '${email}'`]);
  const token = (await api('POST', '/auth/login', null, { email, password: 'gils password 123' })).body.token;
  const project = (await api('POST', '/projects', token, { name: 'gils-app' })).body.id;
  const service = (await api('POST', `/projects/${project}/services`, token, { name: 'web', source_kind: 'upload', start_command: 'python3 app.py', healthcheck_path: '/health' })).body.id;
  const fixture = new URL('../server/tests/fixtures/hello', import.meta.url).pathname;
  const archive = execFileSync('tar', ['czf', '-', '-C', fixture, '.']);
  assert.equal((await api('POST', `/services/${service}/source`, token, archive, 'application/gzip')).status, 201);
  const queued = await api('POST', `/services/${service}/deployments`, token, {});
  assert.equal(queued.status, 201, JSON.stringify(queued.body));
  const deployment = queued.body.id;
  let status = '';
  for (let i = 0; i < 600 && status !== 'running'; i++) {
    status = (await api('GET', `/deployments/${deployment}`, token)).body.deployment.status;
    if (status !== 'running') await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 'running');

  // The admin finds Gil, opens his page, then his deployment with its events and logs.
  const page = await newPage();
  await signIn(page, server.admin.email, server.admin.password);
  await page.waitForURL('**/dashboard');
  await goto(page, `/admin?q=${encodeURIComponent(email)}`);
  await page.click(`tr[data-email="${email}"] a`);
  await page.waitForURL(/\/admin\/users\/[0-9a-f-]{36}$/);
  await page.locator('[data-testid=projects] >> text=gils-app').waitFor();
  await page.click(`[data-testid=deployments] tr[data-id="${deployment}"] a`);
  await page.waitForURL(`**/admin/deployments/${deployment}`);
  await page.locator('[data-testid=logs] >> text=hello v1 starting').waitFor();
  await page.locator('h2 + [data-testid=status]:has-text("running"), [data-testid=status]:has-text("running")').first().waitFor();
  await page.screenshot({ path: `${SHOTS}admin-deployment.png`, fullPage: true });

  // Suspended: his service stops, with the reason shown, and its address answers 404.
  await goto(page, `/admin?q=${encodeURIComponent(email)}`);
  const row = page.locator(`tr[data-email="${email}"]`);
  await row.locator('button:has-text("Suspend")').click();
  await row.locator('text=suspended').waitFor();
  await goto(page, `/admin/deployments/${deployment}`);
  await page.locator('[data-testid=status]:has-text("removed")').first().waitFor();
  await page.locator('text=Stopped: the account was suspended by an administrator.').first().waitFor();
  const host = `web.gils-app.localhost:${new URL(server.url).port}`;
  let answer = 0;
  for (let i = 0; i < 100 && answer !== 404; i++) {
    answer = await new Promise((resolve) => {
      import('node:http').then(({ request }) => {
        const req = request({ host: '127.0.0.1', port: new URL(server.url).port, path: '/', headers: { host } }, (res) => { res.resume(); resolve(res.statusCode); });
        req.on('error', () => resolve(0));
        req.end();
      });
    });
    if (answer !== 404) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(answer, 404, 'the suspended user\'s service no longer answers');
  assert.equal((await api('GET', '/projects', token)).status, 401, 'and his token no longer works');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a returning visitor loads the dashboard without downloading the bundle again', async () => {
  // A browser of its own: an empty cache to start from.
  const own = await launch();
  try {
    const page = await own.context.newPage();
    const loads = [];
    page.on('requestfinished', async (req) => {
      if (!/\/pkg\/roundhouse-[0-9a-f]{10}\.wasm$/.test(req.url())) return;
      const res = await req.response();
      loads.push({ bytes: (await req.sizes()).responseBodySize, encoding: res?.headers()['content-encoding'], cache: res?.headers()['cache-control'] });
    });
    await register(page, { name: 'Rae', email: `rae-${Date.now()}@example.com`, password: 'raes password 123' });
    await goto(page, '/dashboard');
    await page.reload();
    await page.waitForSelector('body[data-hydrated="true"]');
    for (let i = 0; i < 30 && loads.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(loads.length >= 1, `the bundle was loaded by its content-hashed name: ${JSON.stringify(loads)}`);
    const [first, ...later] = loads;
    assert.ok(first.bytes > 0 && first.encoding === 'br', `the first load downloads it, brotli-compressed: ${JSON.stringify(first)}`);
    assert.equal(first.cache, 'public, max-age=31536000, immutable', 'kept for good: its name changes with its content');
    // Later loads take it from the browser's cache without asking: no body comes over the wire
    // (the size Chromium reports for a cache hit is 0 or less).
    assert.ok(later.every((l) => l.bytes <= 0), `later loads download nothing: ${JSON.stringify(loads)}`);
    await page.screenshot({ path: `${SHOTS}returning-dashboard.png` });
  } finally {
    await own.close();
  }
});
