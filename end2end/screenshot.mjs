// Takes full-page screenshots of the given paths: node end2end/screenshot.mjs BASE OUTDIR /path...
// Logs browser console errors, so a broken hydration is visible too.
import { launch } from './support/browser.mjs';

const [base, outDir, ...paths] = process.argv.slice(2);
const { context, close } = await launch();
const page = await context.newPage();
page.on('console', (m) => { if (m.type() === 'error') console.log(`console error: ${m.text()}`); });
page.on('pageerror', (e) => console.log(`page error: ${e.message}`));
for (const p of paths) {
  const res = await page.goto(base + p, { waitUntil: 'networkidle' });
  await page.waitForTimeout(300);
  const file = `${outDir}/${p.replace(/[^a-z0-9]+/gi, '_') || 'home'}.png`;
  await page.screenshot({ path: file, fullPage: true });
  console.log(`${res.status()} ${p} -> ${file}`);
}
await close();
