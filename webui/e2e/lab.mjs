// End-to-end tests of the console in Debian's Chromium against a real `septa` process with real
// traffic: the one of a running `septa lab`. tests/lab.rs runs this file (after the lab's own
// checks made their denied Modbus writes and blocked connections), with
//
//   SEPTA_E2E_URL       the console's address (https://127.0.0.1:18080 in the lab test)
//   SEPTA_E2E_USER      an administrator (default admin)
//   SEPTA_E2E_PASSWORD  its password
//   SEPTA_E2E_EXPECT    JSON: what the lab's traffic and policy must show (see `expect` below)
//
// Covers the list on the real process: login, the dashboard's first meaningful paint,
// denied flows with their reasons, the map's zones, hosts and edges, a policy edit with a
// validation error then a fix, what-if, commit with a confirm deadline then Confirm, rollback to
// the revision that ran before (so the lab runs its own policy again afterwards), and the audit
// and anomaly pages. Screenshots and metrics.json go to $SEPTA_UI_ARTIFACTS/lab (default
// /tmp/septa-ui-artifacts/lab). Not matched by `npm run e2e` (node --test runs *.test.mjs).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dashboardPaint, editorText, inPolicy, launchChromium, login, setEditor } from './common.mjs';

const URL = (process.env.SEPTA_E2E_URL ?? '').replace(/\/$/, '');
const USER = process.env.SEPTA_E2E_USER ?? 'admin';
const PASSWORD = process.env.SEPTA_E2E_PASSWORD ?? '';
if (!URL || !PASSWORD || !process.env.SEPTA_E2E_EXPECT)
  throw new Error('lab.mjs needs SEPTA_E2E_URL, SEPTA_E2E_PASSWORD and SEPTA_E2E_EXPECT (tests/lab.rs sets them)');
/**
 * {
 *   zones: [name],                                  every zone of the running policy
 *   edges: [{src, dst, verdict}],                   host pairs the traffic made (verdict: allowed | denied | would-deny)
 *   denied: [{src, dst, port, reason}],             deny records to find on the Flows page; `reason` a regex of the row
 *   edgeDetails: {src, dst, verdict, reason},       an edge to click; `reason` a regex of its details
 *   whatif: {src, dst, port, result},               a what-if and a regex of its answer
 *   edit: {at, bad, fixFrom, fixTo}                 the validation error (`at` -> `bad`), then the fix (`fixFrom` -> `fixTo`)
 * }
 */
const expect = JSON.parse(process.env.SEPTA_E2E_EXPECT);
const ART = join(process.env.SEPTA_UI_ARTIFACTS ?? '/tmp/septa-ui-artifacts', 'lab');
mkdirSync(ART, { recursive: true });
const metrics = {};

let browser;
let context;
let page;
/** The revision running before the console's edit: the rollback goes back to it. */
let before_;

async function shot(name) {
  await page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });
}

before(async () => {
  browser = await launchChromium();
  // The lab's API has a self-signed certificate.
  context = await browser.newContext({ viewport: { width: 1400, height: 900 }, ignoreHTTPSErrors: true });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
});

after(async () => {
  writeFileSync(join(ART, 'metrics.json'), JSON.stringify(metrics, null, 2));
  console.log('metrics', JSON.stringify(metrics));
  await browser?.close();
});

describe('console on the lab', () => {
  test('login: a wrong password is refused, the admin signs in and the dashboard shows the lab', async () => {
    await page.goto(URL + '/');
    await page.waitForSelector('form[aria-label="Sign in"]');
    await shot('lab-01-login');
    await login(page, USER, 'wrong-password-here');
    await page.waitForSelector('[role=alert]');
    assert.match(await page.textContent('[role=alert]'), /Wrong user name or password/);
    await login(page, USER, PASSWORD);
    await page.waitForSelector('[data-testid=dashboard][data-loaded]');
    before_ = await page.evaluate(async () => (await (await fetch('/api/v1/policy')).json()).revision);
    assert.ok(before_?.id, 'a revision runs');
    assert.match(await page.textContent('main'), new RegExp(`revision ${before_.id}\\b`));
    // The lab's ports (net_af_packet vdevs) turn into rates after two counter polls.
    await page.waitForTimeout(4500);
    assert.match(await page.textContent('main'), /net_af_packet0/);
    // Health of the real process: its worker polls, the inference thread scores (shadow).
    await page.waitForSelector('[data-testid=health-panel][data-status]');
    const workers = await page.$$eval('[data-testid=health-worker]', (rows) => rows.map((r) => [r.dataset.state, r.textContent]));
    assert.ok(workers.length >= 1 && workers.every(([s]) => s === 'running'), JSON.stringify(workers));
    assert.equal(await page.getAttribute('[data-testid=health-inference]', 'data-state'), 'running');
    await shot('lab-02-dashboard');
  });

  test('first meaningful paint of the dashboard on the lab (fresh loads, signed in)', async () => {
    const t = await dashboardPaint(context, URL);
    metrics.dashboard = t;
    const sorted = (k) => t.map((x) => x[k]).sort((a, b) => a - b);
    metrics.dashboardMedian = { fcpMs: sorted('fcpMs')[2], dataPaintedMs: sorted('dataPaintedMs')[2] };
    console.log(`dashboard on the lab: first contentful paint ${sorted('fcpMs').join('/')} ms, data painted ${sorted('dataPaintedMs').join('/')} ms`);
    console.log(`dashboard on the lab: last response before the data paint: ${t.map((x) => x.lastResponse).join(', ')}`);
    assert.ok(t.every((x) => x.fcpMs > 0 && x.dataPaintedMs > 0));
  });

  test('denied flows of the lab appear with their reasons', async () => {
    const decides = [];
    const onReq = (r) => r.url().includes('/api/v1/policy/decide') && decides.push(r.url());
    page.on('request', onReq);
    await page.goto(URL + '/#/flows');
    for (const d of expect.denied) {
      await page.fill('input[name=src]', d.src);
      await page.fill('input[name=dst]', d.dst);
      await page.fill('input[name=port]', String(d.port));
      await page.selectOption('select[name=action]', 'deny');
      await page.click('form[aria-label="Flow filter"] button[type=submit]');
      const reason = new RegExp(d.reason);
      // The filtered answer replaces the table: until it arrives the rows shown are the previous
      // (unfiltered) ones, which may already hold a matching denied row among allowed ones.
      await page
        .waitForFunction(
          (src) => {
            const re = new RegExp(src);
            const rows = [...document.querySelectorAll('[data-testid=flows-table] tbody tr')];
            return rows.some((r) => re.test(r.textContent)) && rows.every((r) => /denied/.test(r.textContent));
          },
          d.reason,
          { timeout: 15_000 },
        )
        .catch(async (e) => {
          throw new Error(`no row matching /${d.reason}/, or rows other than denied ones, for ${d.src} -> ${d.dst}:${d.port}:\n${await page.textContent('[data-testid=flows-table]')}\n${e}`);
        });
      const rows = await page.$$eval('[data-testid=flows-table] tbody tr', (rs) => rs.map((r) => r.textContent));
      assert.ok(rows.every((r) => /denied/.test(r)), 'only denied rows under the filter');
      console.log(`flows: ${d.src} -> ${d.dst}:${d.port}: ${rows.find((r) => reason.test(r))}`);
      await page.screenshot({ path: join(ART, `lab-03-flows-${d.src}.png`) });
    }
    page.off('request', onReq);
    assert.deepEqual(decides, [], 'the records carry their clause: no what-if call per row');
    for (const k of ['src', 'dst', 'port']) await page.fill(`input[name=${k}]`, '');
    await page.selectOption('select[name=action]', '');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.waitForSelector('[data-testid=flows-table] tbody tr td.mono');
    await page.screenshot({ path: join(ART, 'lab-03-flows.png') });
  });

  test("the zone map renders the lab's zones, hosts and flow edges, with details on click", async () => {
    await page.goto(URL + '/#/map');
    await page.waitForSelector('[data-testid=map][data-edges]');
    const drawn = await page.evaluate(() => {
      const cy = document.querySelector('[data-testid=map]').cy;
      return {
        zones: cy.nodes('[kind = "zone"]').map((n) => n.id()),
        hosts: cy.nodes('[kind = "host"]').map((n) => n.id()),
        edges: cy.edges().map((e) => ({ src: e.data('source'), dst: e.data('target'), verdict: e.data('verdict') })),
      };
    });
    const has = (e) => drawn.edges.some((x) => x.src === `host:${e.src}` && x.dst === `host:${e.dst}` && x.verdict === e.verdict);
    for (const z of expect.zones) assert.ok(drawn.zones.includes(`zone:${z}`), `zone ${z} not drawn: ${drawn.zones}`);
    for (const e of expect.edges) {
      assert.ok(drawn.hosts.includes(`host:${e.src}`) && drawn.hosts.includes(`host:${e.dst}`), `hosts of ${JSON.stringify(e)}: ${drawn.hosts}`);
      assert.ok(has(e), `edge ${JSON.stringify(e)} not drawn: ${JSON.stringify(drawn.edges)}`);
    }
    assert.ok(drawn.edges.some((e) => e.verdict === 'allowed') && drawn.edges.some((e) => e.verdict === 'denied'), JSON.stringify(drawn.edges));
    metrics.map = { zones: drawn.zones.length, hosts: drawn.hosts.length, edges: drawn.edges.length };
    console.log(`map: ${drawn.zones.length} zones, ${drawn.hosts.length} hosts, ${drawn.edges.length} edges`);
    // Click the edge (the map draws on a canvas: at its rendered midpoint) and read its details.
    const d = expect.edgeDetails;
    const box = await page.locator('[data-testid=map]').boundingBox();
    const mid = await page.evaluate(
      ({ src, dst, verdict }) => {
        const cy = document.querySelector('[data-testid=map]').cy;
        const e = cy.edges().filter((x) => x.data('source') === `host:${src}` && x.data('target') === `host:${dst}` && x.data('verdict') === verdict)[0];
        return e.renderedMidpoint();
      },
      d,
    );
    await page.mouse.click(box.x + mid.x, box.y + mid.y);
    const reason = new RegExp(d.reason);
    await page
      .waitForFunction((src) => new RegExp(src).test(document.querySelector('[data-testid=map-details]').textContent), d.reason, { timeout: 10_000 })
      .catch(async (e) => {
        await shot('lab-04-map-click-failed');
        throw new Error(`edge details not /${d.reason}/: ${await page.textContent('[data-testid=map-details]')}\n${e}`);
      });
    const details = await page.textContent('[data-testid=map-details]');
    assert.match(details, reason);
    // The lab's alerts were read (its [ml] scores in shadow mode): a count, or none for this pair.
    assert.match(details, /anomalies: (none|\d+ \(\d+ open\), latest: .+ \(septa-flow-[\w-]+\))/);
    await shot('lab-04-map');
  });

  test('policy: a validation error is shown at its line, then fixed and staged', async () => {
    await page.goto(URL + '/#/policy');
    await page.waitForSelector('[data-testid=editor][data-ready]');
    const original = await editorText(page);
    const { at, bad, fixFrom, fixTo } = expect.edit;
    assert.ok(original.includes(at) && original.includes(fixFrom), `the running text has ${at} and ${fixFrom}:\n${original}`);
    const broken = inPolicy(original, at, bad);
    await setEditor(page, broken);
    await page.click('text=Validate & stage');
    await page.waitForSelector('[data-testid=editor-errors]');
    const errs = await page.textContent('[data-testid=editor-errors]');
    const line = broken.split('\n').findIndex((l) => l.includes(bad)) + 1;
    assert.match(errs, new RegExp(`line ${line}:`), `${errs} (expected line ${line})`);
    await page.waitForSelector('.cm-lintRange-error, .cm-lint-marker-error');
    // The marked line in view for the screenshot.
    await page.evaluate(() => document.querySelector('.cm-lintRange-error, .cm-lint-marker-error').scrollIntoView({ block: 'center' }));
    await shot('lab-05-policy-error');
    await setEditor(page, inPolicy(original, fixFrom, fixTo));
    await page.click('text=Validate & stage');
    await page.waitForSelector('[data-testid=write-note]');
    assert.match(await page.textContent('[data-testid=write-note]'), /Staged as revision \d+/);
    assert.equal(await page.locator('[data-testid=editor-errors]').count(), 0);
    // The impact of the staged draft over the lab's recorded flows: the edit decides none differently.
    await page.waitForFunction(() => !/Computing/.test(document.querySelector('main').textContent));
    await page.waitForSelector('text=No recorded flow would be decided differently');
  });

  test('policy: what-if explains a decision of the running policy', async () => {
    const w = expect.whatif;
    await page.fill('input[name=wi-src]', w.src);
    await page.fill('input[name=wi-dst]', w.dst);
    await page.fill('input[name=wi-port]', String(w.port));
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('[data-testid=whatif-result]');
    assert.match(await page.textContent('[data-testid=whatif-result]'), new RegExp(w.result));
  });

  test('policy: commit needs a reason, then commits with a confirm deadline and is confirmed', async () => {
    await page.click('button:text-is("Commit")');
    await page.waitForSelector('.field-error[role=alert]');
    assert.match(await page.textContent('.field-error[role=alert]'), /reason is required/);
    await page.fill('input[name=reason]', 'lab console test: description edited');
    await page.fill('input[name=confirm-within]', '300');
    await page.click('button:text-is("Commit")');
    await page.waitForSelector('[data-testid=pending]');
    const c1 = await page.textContent('[data-testid=countdown]');
    assert.match(c1, /^[45]:\d\d$/);
    await page.waitForTimeout(1600);
    assert.notEqual(await page.textContent('[data-testid=countdown]'), c1, 'the countdown moves');
    await page.check('text=diff against running').catch(() => {});
    await shot('lab-06-policy-pending');
    const running = await page.evaluate(async () => (await (await fetch('/api/v1/policy')).json()).revision);
    assert.notEqual(running.id, before_.id, 'the committed revision runs');
    await page.fill('input[name=confirm-reason]', 'lab console test: confirmed');
    await page.click('[data-testid=pending] button:text-is("Confirm")');
    await page.waitForSelector('[data-testid=pending]', { state: 'detached' });
    assert.match(await page.textContent('[data-testid=write-note]'), /Confirmed/);
  });

  test('policy: history shows the diff and rolls back to the revision that ran before', async () => {
    await page.click(`[data-testid=history] tbody tr:has(td:text-is("${before_.id}"))`);
    await page.waitForSelector('[data-testid=revision-source]');
    await page.fill('input[name=rollback-reason]', 'lab console test: back to the lab policy');
    await page.click(`button:text("Roll back to ${before_.id}")`);
    await page.waitForSelector('[data-testid=write-note]:text("Rolled back")');
    const now = await page.evaluate(async () => (await (await fetch('/api/v1/policy')).json()).revision);
    assert.equal(now.hash, before_.hash, 'the lab policy runs again');
    await shot('lab-07-policy-history');
  });

  test('audit and anomalies pages of the lab', async () => {
    await page.goto(URL + '/#/audit');
    await page.waitForSelector('[data-testid=verify] .badge');
    assert.match(await page.textContent('[data-testid=verify]'), /verified/);
    await page.waitForSelector('[data-testid=audit-table] td:text("policy.commit")');
    assert.match(await page.textContent('[data-testid=audit-table]'), /lab console test: description edited/);
    await shot('lab-08-audit');
    await page.goto(URL + '/#/anomalies');
    await page.waitForSelector('[data-testid=anomalies]');
    // The lab serves /api/v1/anomalies (its [ml] runs in shadow mode): a count, then a list or "No open anomalies".
    await page.waitForSelector('[data-testid=anomaly-open]');
    metrics.anomaliesOpen = Number(await page.textContent('[data-testid=anomaly-open]'));
    const rows = await page.$$eval('[data-testid=anomaly-row]', (rs) => rs.map((r) => r.textContent));
    assert.ok(rows.every((r) => /septa-flow-/.test(r)), 'each alert names the lab model that raised it');
    await shot('lab-09-anomalies');
  });
});
