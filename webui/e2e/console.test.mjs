// End-to-end tests of the console in Debian's Chromium (playwright-core, no browser download)
// against the real API served by control/examples/console_demo.rs. Screenshots of every page
// and the measured numbers go to $SEPTA_UI_ARTIFACTS (default /tmp/septa-ui-artifacts).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readdirSync, statSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dashboardPaint, editorText, inPolicy, launchChromium, login, setEditor } from './common.mjs';
import { startServer } from './server.mjs';
import { syntheticMap } from './synthetic.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const ART = process.env.SEPTA_UI_ARTIFACTS ?? '/tmp/septa-ui-artifacts';
mkdirSync(ART, { recursive: true });
const metrics = {};
const PASS = 'correct-horse-battery';

let srv;
let browser;
let context;
let page;

async function shot(name) {
  await page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });
}

before(async () => {
  srv = await startServer();
  for (const [name, role] of [['viewer', 'viewer'], ['approver', 'approver']])
    await srv.api('POST', '/api/v1/users', { name, role, password: PASS, reason: 'e2e' });
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e));
});

after(async () => {
  writeFileSync(join(ART, 'metrics.json'), JSON.stringify(metrics, null, 2));
  console.log('metrics', JSON.stringify(metrics));
  await browser?.close();
  srv?.stop();
});

describe('console', () => {
  test('the console is served from the binary and the login refuses a wrong password', async () => {
    await page.goto(srv.url + '/');
    await page.waitForSelector('form[aria-label="Sign in"]');
    await shot('01-login');
    await login(page, 'admin', 'wrong-password-here');
    await page.waitForSelector('[role=alert]');
    assert.match(await page.textContent('[role=alert]'), /Wrong user name or password/);
  });

  test('admin signs in and the dashboard shows live data', async () => {
    await login(page, 'admin', srv.password);
    await page.waitForSelector('[data-testid=dashboard][data-loaded]');
    assert.match(await page.textContent('main'), /revision 1/);
    // Live: flows arrive over SSE and counters turn into rates.
    await page.waitForFunction(() => Number(document.querySelector('[data-testid=active-flows]')?.textContent) > 0);
    await page.waitForTimeout(4500);
    assert.match(await page.textContent('main'), /port0/);
    // Denied pairs show the refused packets and, from deny records that carry sizes, their bytes.
    await page.waitForSelector('[data-testid=denied-pair]');
    const pairs = await page.$$eval('[data-testid=denied-pair] td:nth-child(2)', (cells) => cells.map((c) => c.innerText.replace(/\s+/g, ' ')));
    assert.ok(pairs.some((t) => /^\d+ pkts [\d.,]+ (B|kB|MB)$/.test(t)), JSON.stringify(pairs));
    // Health: both simulated workers and the inference thread run, with rates measured.
    await page.waitForSelector('[data-testid=health-panel][data-status=ok]');
    const workers = await page.$$eval('[data-testid=health-worker]', (rows) => rows.map((r) => [r.dataset.state, r.textContent]));
    assert.equal(workers.length, 2, JSON.stringify(workers));
    assert.ok(workers.every(([state, text]) => state === 'running' && /polls\/s/.test(text)), JSON.stringify(workers));
    assert.match(workers[1][1], /worker 1 · lcore 2/);
    const inference = await page.textContent('[data-testid=health-inference]');
    assert.match(inference, /inference · shadow/);
    assert.equal(await page.getAttribute('[data-testid=health-inference]', 'data-state'), 'running');
    assert.match(await page.textContent('[data-testid=health-models]'), /demo-flow-if-v1/);
    // Each demo worker's flow table (262,144 flows, filling slowly), worker 0 also routing; the
    // inference line counts repeats and calibrations.
    const lines = () =>
      page.$$eval('[data-testid=health-flows], [data-testid=health-router]', (rows) =>
        rows.map((r) => [r.dataset.testid, r.dataset.warn, r.textContent.replace(/\s+/g, ' ').trim()]),
      );
    let details = await lines();
    assert.deepEqual(details.map(([id, warn]) => [id, warn]), [['health-flows', 'false'], ['health-router', 'false'], ['health-flows', 'false']], JSON.stringify(details));
    assert.match(details[0][2], /^flows [\d,]+ \/ 262,144 \(\d\.\d %\) · \d+ half-open · [\d,]+ expired · 0 evicted$/);
    assert.match(details[1][2], /^router · [\d,]+ pings answered · \d+ ARP \/ \d+ ND answers · time exceeded \d+ sent, 0 suppressed · neighbours 9 \/ 1,024$/);
    assert.match((await page.textContent('[data-testid=health-models]')).replace(/\s+/g, ' '), /\d+ repeats suppressed · [01] calibrations?/);
    // A nearly full table on worker 1 and a full transmit ring on worker 0 (the real report,
    // changed in flight) turn their lines amber.
    await page.route('**/api/v1/health', async (route) => {
      const real = await (await route.fetch()).json();
      real.workers[1].flows = { active: 240000, capacity: 262144, half_open: 100, inserted: 300000, expired: 60000, evicted_half_open: 0 };
      real.workers[0].router.tx_ring_full = 12;
      await route.fulfill({ json: real });
    });
    await page.waitForSelector('[data-testid=health-router][data-warn=true]');
    details = await lines();
    assert.deepEqual(details.map(([, warn]) => warn), ['false', 'true', 'true'], JSON.stringify(details));
    assert.match(details[1][2], /· 12 tx ring full$/);
    assert.match(details[2][2], /240,000 \/ 262,144 \(91 %\)/);
    assert.equal(await page.$eval('[data-testid=health-flows][data-warn=true] span', (e) => getComputedStyle(e).color), 'rgb(217, 142, 4)');
    await shot('02-dashboard-health-warn');
    await page.unroute('**/api/v1/health');
    await page.waitForFunction(() => !document.querySelector('[data-testid=health-panel] [data-warn=true]'));
    await shot('02-dashboard');
  });

  test('first meaningful paint of the dashboard (fresh load, signed in)', async () => {
    const t = await dashboardPaint(context, srv.url);
    metrics.dashboard = t;
    assert.ok(t.every((x) => x.fcpMs > 0 && x.dataPaintedMs > 0));
  });

  test('a denied flow appears with its reason', async () => {
    // The record carries its clause: the page asks no what-if per row.
    const decides = [];
    const onReq = (r) => r.url().includes('/api/v1/policy/decide') && decides.push(r.url());
    page.on('request', onReq);
    await page.goto(srv.url + '/#/flows');
    await page.selectOption('select[name=action]', 'deny');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    const row = page.locator('[data-testid=flows-table] tbody tr', { hasText: 'denied' }).first();
    await row.waitFor();
    await page.waitForFunction(() =>
      [...document.querySelectorAll('[data-testid=flows-table] tbody tr')].some((r) => /spec\.conduits|default/.test(r.textContent)),
    );
    const text = await page.textContent('[data-testid=flows-table]');
    assert.match(text, /denied/);
    assert.match(text, /denied by (conduit no-it-to-ot|default deny), rule \d+/);
    assert.match(text, /denied by \S+[^,]*, rule \d+ ?demo-hospital: spec\.(conduits|defaults)/, 'the clause names its place in the policy');
    page.off('request', onReq);
    assert.deepEqual(decides, [], 'no what-if call per row');
    // Time window: the last 5 minutes hold the demo's traffic; a custom window whose end is
    // before its start is refused by the API next to the "to" field.
    await page.selectOption('select[name=window]', '300');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.locator('[data-testid=flows-table] tbody tr', { hasText: 'denied' }).first().waitFor();
    await page.selectOption('select[name=window]', 'custom');
    await page.fill('input[name=from]', '2026-01-02T00:00:00');
    await page.fill('input[name=to]', '2026-01-01T00:00:00');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.waitForSelector('input[name=to][aria-invalid=true]');
    assert.match(await page.textContent('.field-error'), /before since/);
    await page.fill('input[name=to]', '2026-01-03T00:00:00');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.waitForSelector('[data-testid=flows-table] td.empty');
    await page.selectOption('select[name=window]', '0');
    // An L7 conduit's flow shows its protocol label.
    await page.selectOption('select[name=action]', 'inspect');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.locator('[data-testid=flows-table] [data-testid=l7]', { hasText: 'modbus' }).first().waitFor();
    assert.match(await page.textContent('[data-testid=flows-table]'), /inspected \(L7\) under conduit hmi-to-plc/);
    await page.selectOption('select[name=action]', 'deny');
    // A bad filter value is refused by the API and shown next to its field.
    await page.fill('input[name=src]', 'not-an-ip');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.waitForSelector('.field-error');
    assert.match(await page.textContent('.field-error'), /.+/);
    await page.fill('input[name=src]', '');
    await page.click('form[aria-label="Flow filter"] button[type=submit]');
    await page.screenshot({ path: join(ART, '03-flows.png') });
  });

  test('the zone map renders zones, hosts and flow edges, and shows details on click', async () => {
    await page.goto(srv.url + '/#/map');
    await page.waitForSelector('[data-testid=map][data-edges]');
    const nodes = Number(await page.getAttribute('[data-testid=map]', 'data-nodes'));
    const edges = Number(await page.getAttribute('[data-testid=map]', 'data-edges'));
    assert.ok(nodes >= 6, `nodes ${nodes}`);
    assert.ok(edges >= 3, `edges ${edges}`);
    const box = await page.locator('[data-testid=map]').boundingBox();
    const pos = await page.evaluate(() => {
      const cy = document.querySelector('[data-testid=map]').cy;
      const n = cy.nodes('[kind = "host"]').first();
      return n.renderedPosition();
    });
    await page.mouse.click(box.x + pos.x, box.y + pos.y);
    await page.waitForFunction(() => /zones:/.test(document.querySelector('[data-testid=map-details]').textContent));
    // The PLC's details count the alerts on its flows (the demo's Modbus write burst).
    const plc = await page.evaluate(() => document.querySelector('[data-testid=map]').cy.$id('host:10.30.1.10').renderedPosition());
    await page.mouse.click(box.x + plc.x, box.y + plc.y);
    await page.waitForFunction(() => /10\.30\.1\.10/.test(document.querySelector('[data-testid=map-details]').textContent));
    assert.match(await page.textContent('[data-testid=map-details]'), /anomalies: 1 \(1 open\), latest: \(demo\) Modbus write burst from an HMI \(demo-iforest\)/);
    await shot('04-map');
  });

  test('policy: a validation error is shown at its line, then fixed and staged with an impact preview', async () => {
    await page.goto(srv.url + '/#/policy');
    await page.waitForSelector('[data-testid=editor][data-ready]');
    const original = await editorText(page);
    assert.match(original, /10\.20\.0\.0\/24/);
    // The editor holds the running revision's own text, the operator's comments included.
    assert.match(original, /^# Septa demo policy/);
    assert.match(await page.textContent('[data-testid=editor-source]'), /YAML text as submitted/);
    const bad = inPolicy(original, '10.20.0.0/24', '10.20.0.0/33');
    await setEditor(page, bad);
    await page.click('text=Validate & stage');
    await page.waitForSelector('[data-testid=editor-errors]');
    const errs = await page.textContent('[data-testid=editor-errors]');
    const line = bad.split('\n').findIndex((l) => l.includes('10.20.0.0/33')) + 1;
    assert.match(errs, new RegExp(`line ${line}:`), `${errs} (expected line ${line})`);
    await page.waitForSelector('.cm-lintRange-error, .cm-lint-marker-error');
    await shot('05-policy-error');
    await setEditor(page, inPolicy(original, '10.20.0.0/24', '10.20.0.0/25'));
    await page.click('text=Validate & stage');
    await page.waitForSelector('[data-testid=write-note]');
    assert.match(await page.textContent('[data-testid=write-note]'), /Staged as revision 2/);
    assert.equal(await page.locator('[data-testid=editor-errors]').count(), 0);
    await page.waitForFunction(() => !/Computing/.test(document.querySelector('main').textContent));
  });

  test('policy: what-if starts empty with examples from the zones, checks its fields before sending, fills from a recorded flow', async () => {
    // Nothing prefilled; the examples are the first hosts of the running policy's zones (it, ehr-db).
    for (const k of ['src', 'dst', 'port']) assert.equal(await page.inputValue(`input[name=wi-${k}]`), '', k);
    assert.equal(await page.getAttribute('input[name=wi-src]', 'placeholder'), 'e.g. 10.10.0.1');
    assert.equal(await page.getAttribute('input[name=wi-dst]', 'placeholder'), 'e.g. 10.20.0.1');
    // Bad fields are named next to them and nothing is sent.
    const decides = [];
    const onReq = (r) => r.url().includes('/api/v1/policy/decide') && decides.push(r.url());
    page.on('request', onReq);
    await page.fill('input[name=wi-src]', '10.10.1.23');
    await page.fill('input[name=wi-dst]', '10.30.1.10');
    await page.fill('input[name=wi-proto]', 'tcpx');
    await page.fill('input[name=wi-port]', '70000');
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('input[name=wi-port][aria-invalid=true]');
    const errs = await page.$$eval('form[aria-label=What-if] .field-error', (es) => es.map((e) => e.textContent));
    assert.deepEqual(errs, ['"tcpx" is not tcp, udp, icmp, icmpv6 or a protocol number 0–255', '"70000" is not a port: a whole number 0–65535']);
    page.off('request', onReq);
    assert.deepEqual(decides, [], 'an invalid question is not sent');
    // A flow the appliance recorded fills the form; the running policy decides it.
    await page.waitForSelector('select[name=wi-recent]:not([disabled])');
    const label = await page.$eval('select[name=wi-recent] option:nth-child(2)', (o) => o.textContent);
    const [, src, dst, proto, port] = label.match(/^(\S+) → (\S+) (\w+)\/(\d+) \(/);
    await page.selectOption('select[name=wi-recent]', { index: 1 });
    assert.deepEqual(
      await Promise.all(['src', 'dst', 'proto', 'port'].map((k) => page.inputValue(`input[name=wi-${k}]`))),
      [src, dst, proto, port],
    );
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('[data-testid=whatif-result]');
    assert.match(await page.textContent('[data-testid=whatif-result]'), /(allow|deny|inspect) · (enforce|monitor)/);
    // Back to an empty question (the answer goes away) for the next test.
    for (const k of ['src', 'dst', 'port']) await page.fill(`input[name=wi-${k}]`, '');
    await page.fill('input[name=wi-proto]', 'tcp');
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('[data-testid=whatif-result]', { state: 'detached' });
    assert.match(await page.textContent('form[aria-label=What-if]'), /enter a source address/);
  });

  test('policy: what-if explains a decision and names a bad field', async () => {
    await page.fill('input[name=wi-src]', '10.10.1.23');
    await page.fill('input[name=wi-dst]', '10.30.1.10');
    await page.fill('input[name=wi-port]', '502');
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('[data-testid=whatif-result]');
    const r = await page.textContent('[data-testid=whatif-result]');
    assert.match(r, /deny/);
    assert.match(r, /no-it-to-ot|spec\.conduits\[0\]/);
    await page.fill('input[name=wi-src]', '10.10.1');
    await page.click('form[aria-label=What-if] button[type=submit]');
    await page.waitForSelector('form[aria-label=What-if] .field-error');
    assert.match(await page.textContent('form[aria-label=What-if] .field-error'), /not an IP/);
    await page.fill('input[name=wi-src]', '10.10.1.23');
  });

  test('policy: commit needs a reason, then commits with a confirm deadline and is confirmed', async () => {
    await page.click('button:text-is("Commit")');
    await page.waitForSelector('.field-error[role=alert]');
    assert.match(await page.textContent('.field-error[role=alert]'), /reason is required/);
    await page.fill('input[name=reason]', 'narrow the EHR database subnet');
    await page.fill('input[name=confirm-within]', '300');
    await page.click('button:text-is("Commit")');
    await page.waitForSelector('[data-testid=pending]');
    const c1 = await page.textContent('[data-testid=countdown]');
    assert.match(c1, /^[45]:\d\d$/);
    await page.waitForTimeout(1600);
    assert.notEqual(await page.textContent('[data-testid=countdown]'), c1, 'the countdown moves');
    await page.fill('input[name=diff]', '').catch(() => {});
    await page.check('text=diff against running').catch(() => {});
    await shot('06-policy-pending');
    await page.fill('input[name=confirm-reason]', 'checked the EHR app still reaches its database');
    await page.click('[data-testid=pending] button:text-is("Confirm")');
    await page.waitForSelector('[data-testid=pending]', { state: 'detached' });
    assert.match(await page.textContent('[data-testid=write-note]'), /Confirmed/);
  });

  test('policy: history shows a diff and rolls back', async () => {
    await page.click('[data-testid=history] tbody tr:has(td:text-is("1"))');
    await page.waitForSelector('[data-testid=diff], .empty:text("No differences")');
    await page.waitForSelector('[data-testid=revision-source][data-origin=submitted]');
    assert.match(await page.textContent('[data-testid=revision-source] pre'), /^# Septa demo policy/);
    // What a rollback would change, from the API's diff against the running revision.
    await page.waitForSelector('[data-testid=vs-running]');
    assert.match(await page.textContent('[data-testid=vs-running]'), /a rollback to it changes:\s+zones \+0 -0 ~1/);
    await page.fill('input[name=rollback-reason]', 'back to the demo policy');
    await page.click('button:text("Roll back to 1")');
    await page.waitForSelector('[data-testid=write-note]:text("Rolled back")');
    // Revision 1 now has the running revision's content: said so, and no rollback to it is offered.
    await page.waitForSelector('[data-testid=identical]');
    assert.match(await page.textContent('[data-testid=identical]'), /Identical to the running revision \d+: same content/);
    assert.equal(await page.locator('button:text("Roll back to 1")').count(), 0);
    await shot('07-policy-history');
  });

  test('an expired session returns to login and keeps the editor text', async () => {
    const text = (await editorText(page)) + '\n# kept across sessions\n';
    await setEditor(page, text);
    await context.clearCookies();
    await page.click('text=Validate & stage');
    await page.waitForSelector('form[aria-label="Sign in"]');
    assert.match(await page.textContent('.notice'), /session ended/);
    await shot('08-session-expired');
    await login(page, 'admin', srv.password);
    await page.waitForSelector('[data-testid=editor][data-ready]');
    assert.match(await editorText(page), /# kept across sessions/);
  });

  test('audit: records, verification and export', async () => {
    await page.goto(srv.url + '/#/audit');
    await page.waitForSelector('[data-testid=verify] .badge');
    assert.match(await page.textContent('[data-testid=verify]'), /verified/);
    await page.waitForSelector('[data-testid=audit-table] td:text("policy.commit")');
    const [dl] = await Promise.all([
      page.waitForEvent('download'),
      (async () => {
        await page.fill('input[name=from]', '1');
        await page.fill('input[name=to]', '3');
        await page.click('text=Download');
      })(),
    ]);
    assert.match(dl.suggestedFilename(), /septa-audit-1-3\.json/);
    await shot('09-audit');
  });

  test('audit: the page fits a 1366×768 screen; long fields are cut or wrapped and all reachable', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    const p = await ctx.newPage();
    // Records as long as the lab's (a data-plane record with its clause, JSON and timestamps; a
    // refused commit with its validation error), added to the real page of records.
    const hash = 'c0ffee'.repeat(10) + 'abcd';
    const long = [
      { seq: 100000, ts_ms: Date.now(), actor: { kind: 'system', name: 'dataplane' }, action: 'access.allow',
        object: 'tcp 10.30.2.10:38540 -> 10.30.1.10:502 (hmi-station-with-a-long-name)', before: null, after: null,
        reason: 'conduit hmi-reads-plc (allow) ot-hmi -> ot-plc: tcp/502 {"functions":["read_holding_registers","read_input_registers"]} (septa-lab: spec.conduits[2])',
        result: 'ok', detail: `5 observation(s) from 1795707984023 to 1795707985999; sha256 ${hash}`, prev_hash: hash, hash },
      { seq: 100001, ts_ms: Date.now(), actor: { kind: 'user', name: 'a-policy-author-with-a-long-name' }, action: 'policy.stage',
        object: 'policy/septa-lab', before: `sha256:${hash}`, after: null, reason: 'draft staged from the console',
        result: 'refused: policy invalid (1 problem(s)): 27:17: spec.zones[2].subnets[0]: "10.20.0.0/33" is not a prefix such as 10.0.0.0/24 or 2001:db8::/32',
        detail: '', prev_hash: hash, hash: hash.split('').reverse().join('') },
    ];
    await p.route('**/api/v1/audit/records?*', async (route) => {
      const real = await (await route.fetch()).json();
      await route.fulfill({ json: { ...real, items: [...real.items, ...long] } });
    });
    await p.goto(srv.url + '/#/audit');
    await login(p, 'admin', srv.password);
    await p.waitForSelector('[data-testid=audit-row][data-seq="100001"]');
    await p.waitForSelector('[data-testid=verify] .badge');
    const widths = () =>
      p.evaluate(() => {
        const panel = document.querySelector('[data-testid=audit-table]').closest('.panel');
        const d = document.documentElement;
        return { page: [d.scrollWidth, d.clientWidth], panel: [panel.scrollWidth, panel.clientWidth] };
      });
    let w = await widths();
    assert.ok(w.page[0] <= w.page[1], `the page scrolls sideways: ${JSON.stringify(w)}`);
    assert.ok(w.panel[0] <= w.panel[1], `the audit table scrolls sideways: ${JSON.stringify(w)}`);
    // The long object is cut after two lines, with its full text on hover; the result's why is in
    // the wrapped column.
    const row = '[data-testid=audit-row][data-seq="100000"]';
    assert.equal(await p.getAttribute(`${row} td:nth-child(6)`, 'title'), long[0].object);
    assert.ok(await p.$eval(`${row} td:nth-child(6) div`, (e) => e.scrollHeight > e.clientHeight), 'the object is cut');
    assert.match(await p.textContent('[data-testid=audit-row][data-seq="100001"]'), /refused.*policy invalid/);
    await p.screenshot({ path: join(ART, '09d-audit-1366.png') });
    // The details row holds every field in full.
    await p.click(`${row} button[aria-expanded=false]`);
    const details = await p.textContent('[data-testid=audit-details][data-seq="100000"]');
    for (const v of [long[0].object, long[0].reason, long[0].detail, hash, 'system:dataplane', 'previous hash'])
      assert.ok(details.includes(v), `details lack ${v}: ${details}`);
    w = await widths();
    assert.ok(w.page[0] <= w.page[1] && w.panel[0] <= w.panel[1], `open details scroll sideways: ${JSON.stringify(w)}`);
    await p.screenshot({ path: join(ART, '09e-audit-1366-details.png'), fullPage: true });
    await p.setViewportSize({ width: 1440, height: 900 });
    w = await widths();
    assert.ok(w.page[0] <= w.page[1] && w.panel[0] <= w.panel[1], `at 1440 px: ${JSON.stringify(w)}`);
    await ctx.close();
  });

  test('audit: an evidence pack over a window of days downloads with its statements', async () => {
    await page.goto(srv.url + '/#/audit');
    await page.waitForSelector('[data-testid=evidence] input[name=evidence-from]').catch(async (e) => {
      await shot('09b-evidence-missing');
      throw e;
    });
    // A window that holds the demo's commits, as evidence.json.
    const today = new Date().toISOString().slice(0, 10);
    await page.fill('input[name=evidence-from]', '2020-01-01');
    await page.fill('input[name=evidence-to]', today);
    await page.selectOption('select[name=evidence-format]', 'json');
    assert.equal(await page.inputValue('input[name=evidence-to]'), today);
    const [pack] = await Promise.all([
      page.waitForEvent('download', { timeout: 15_000 }).catch(async (e) => {
        throw new Error(`no evidence download: ${await page.textContent('[data-testid=evidence]')}\n${e}`);
      }),
      page.click('[data-testid=evidence] button[type=submit]'),
    ]);
    assert.match(pack.suggestedFilename(), new RegExp(`septa-evidence-2020-01-01-${today}\\.json`));
    const evidence = JSON.parse(readFileSync(await pack.path(), 'utf8'));
    assert.ok(Array.isArray(evidence.statements) && evidence.statements.length > 0, 'the pack has statements');
    assert.match(JSON.stringify(evidence), /demo policy/, 'the pack carries the demo commit and its reason');
    await shot('09c-evidence');
  });

  test('anomalies: listed with their explanation, acknowledged, dismissed only with a reason', async () => {
    await page.goto(srv.url + '/#/anomalies');
    await page.waitForSelector('[data-testid=anomaly-row]');
    const rows = await page.$$('[data-testid=anomaly-row]');
    assert.equal(rows.length, 2, 'the demo pushes two open anomalies');
    const text = await page.textContent('[data-testid=anomaly-list]');
    assert.match(text, /Modbus write burst/);
    assert.match(text, /demo-iforest/);
    assert.match(text, /function 16/);
    // The identified protocol is shown for the Modbus alert only (PostgreSQL is not identified).
    assert.deepEqual(await page.$$eval('[data-testid=anomaly-l7]', (b) => b.map((x) => x.textContent)), ['modbus']);
    await shot('10-anomalies');
    // Acknowledge the first: it leaves the "open" list.
    await rows[0].$eval('button:text("Acknowledge")', (b) => b.click());
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 1);
    assert.equal(await page.textContent('[data-testid=anomaly-open]'), '1');
    // Dismiss needs a reason: the page says so, the API is not called.
    await page.click('[data-testid=anomaly-row] button:text("Dismiss")');
    assert.match(await page.textContent('[data-testid=anomaly-row] [role=alert]'), /reason is required/);
    await page.fill('[data-testid=anomaly-row] input[name=anomaly-reason]', 'known pen test');
    await page.click('[data-testid=anomaly-row] button:text("Dismiss")');
    await page.waitForSelector('[data-testid=anomalies] .empty');
    await page.selectOption('select[name=anomaly-state]', '');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=anomaly-row]').length === 2);
    const all = await page.textContent('[data-testid=anomaly-list]');
    assert.match(all, /dismissed/);
    assert.match(all, /known pen test/);
    assert.match(all, /acknowledged/);
    await shot('10b-anomalies-triaged');
  });

  test('policy: a dry-run validation marks the error line and stores nothing; hits come from the counters', async () => {
    await page.goto(srv.url + '/#/policy');
    await page.waitForSelector('[data-testid=editor][data-ready=true]');
    await page.waitForSelector('[data-testid=hits-source]');
    assert.match(await page.textContent('[data-testid=hits-source]'), /per-clause counters/);
    const revs = await page.evaluate(async () => (await (await fetch('/api/v1/revisions')).json()).items.length);
    const original = await page.evaluate(() => document.querySelector('[data-testid=editor]').editor.text());
    await page.evaluate(
      (t) => document.querySelector('[data-testid=editor]').editor.setText(t),
      inPolicy(original, /10\.20\.0\.0\/\d+/, '10.20.0.0/33'),
    );
    assert.match(original, /10\.20\.0\.0\/\d+/);
    await page.click('button:text-is("Validate")');
    await page.waitForSelector('[data-testid=editor-errors]');
    assert.match(await page.textContent('[data-testid=editor-errors]'), /line \d+/);
    assert.match(await page.textContent('[data-testid=write-error]'), /Invalid policy/);
    await page.evaluate((t) => document.querySelector('[data-testid=editor]').editor.setText(t), original);
    await page.click('button:text-is("Validate")');
    await page.waitForSelector('[data-testid=write-note]');
    assert.match(await page.textContent('[data-testid=write-note]'), /Valid: .*Nothing was stored/);
    const after = await page.evaluate(async () => (await (await fetch('/api/v1/revisions')).json()).items.length);
    assert.equal(after, revs, 'a dry run makes no revision');
  });

  test('a viewer sees no edit buttons and no audit page', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await ctx.newPage();
    await p.goto(srv.url + '/#/policy');
    await login(p, 'viewer', PASS);
    await p.waitForSelector('[data-testid=editor][data-ready]');
    assert.equal(await p.locator('nav a:text("Audit")').count(), 0);
    assert.equal(await p.locator('button:text-is("Commit")').count(), 0);
    assert.equal(await p.locator('text=Validate & stage').count(), 0);
    assert.equal(await p.locator('button:text("Roll back")').count(), 0);
    assert.equal(await p.getAttribute('[data-testid=editor] .cm-content', 'contenteditable'), 'false');
    // What-if stays available to every role (here about a recorded flow: the form starts empty).
    await p.waitForSelector('select[name=wi-recent]:not([disabled])');
    await p.selectOption('select[name=wi-recent]', { index: 1 });
    await p.click('form[aria-label=What-if] button[type=submit]');
    await p.waitForSelector('[data-testid=whatif-result]');
    await p.screenshot({ path: join(ART, '11-viewer-policy.png'), fullPage: true });
    await ctx.close();
  });

  test('the map stays interactive with 500 hosts and 5000 edges (synthetic data)', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const p = await ctx.newPage();
    const { policy, flows } = syntheticMap(500, 5000);
    await p.route('**/api/v1/auth/me', (r) => r.fulfill({ json: { actor: 'user:bench', role: 'viewer' } }));
    await p.route('**/api/v1/policy', (r) => r.fulfill({ json: { policy, revision: null, pending: null } }));
    await p.route('**/api/v1/flows?*', (r) => r.fulfill({ json: { items: flows } }));
    await p.route('**/api/v1/revisions?*', (r) => r.fulfill({ json: { items: [] } }));
    await p.route('**/api/v1/anomalies?*', (r) => r.fulfill({ json: { items: [], open: 0, total: 0, evicted: 0 } }));
    const t0 = Date.now();
    await p.goto(srv.url + '/#/map');
    await p.waitForSelector('[data-testid=map][data-edges]', { timeout: 60_000 });
    const loadMs = Date.now() - t0;
    const edges = Number(await p.getAttribute('[data-testid=map]', 'data-edges'));
    const hosts = await p.evaluate(() => document.querySelector('[data-testid=map]').cy.nodes('[kind = "host"]').length);
    assert.equal(hosts, 500);
    assert.equal(edges, 5000);
    const drawMs = Number((await p.textContent('main')).match(/drawn in (\d+) ms/)[1]);
    // Interactivity: frames drawn while dragging the view for 2 s, and the click-to-details time.
    const box = await p.locator('[data-testid=map]').boundingBox();
    await p.evaluate(() => {
      window.__frames = 0;
      const f = () => {
        window.__frames++;
        window.__raf = requestAnimationFrame(f);
      };
      window.__raf = requestAnimationFrame(f);
    });
    const d0 = Date.now();
    await p.mouse.move(box.x + 20, box.y + 20);
    await p.mouse.down();
    for (let i = 0; i < 60; i++) await p.mouse.move(box.x + 20 + i * 5, box.y + 20 + i * 3);
    await p.mouse.up();
    for (let i = 0; i < 10; i++) await p.mouse.wheel(0, i % 2 ? 200 : -200);
    const dragMs = Date.now() - d0;
    const frames = await p.evaluate(() => {
      cancelAnimationFrame(window.__raf);
      return window.__frames;
    });
    const pos = await p.evaluate(() => {
      const cy = document.querySelector('[data-testid=map]').cy;
      cy.fit();
      const n = cy.nodes('[kind = "host"]').first();
      return n.renderedPosition();
    });
    const c0 = Date.now();
    await p.mouse.click(box.x + pos.x, box.y + pos.y);
    await p.waitForFunction(() => /zones:/.test(document.querySelector('[data-testid=map-details]').textContent));
    const clickMs = Date.now() - c0;
    metrics.map500x5000 = { loadMs, drawMs, dragMs, fpsDuringDrag: Math.round((frames * 1000) / dragMs), clickToDetailsMs: clickMs };
    await p.screenshot({ path: join(ART, '12-map-500x5000.png') });
    await ctx.close();
  });

  test('bundle sizes (gzip): the main bundle and the separate map and editor chunks', () => {
    const dir = join(here, '..', 'dist', 'assets');
    const html = readFileSync(join(here, '..', 'dist', 'index.html'), 'utf8');
    const sizes = {};
    for (const f of readdirSync(dir)) sizes[f] = { raw: statSync(join(dir, f)).size, gzip: gzipSync(readFileSync(join(dir, f))).length };
    const initial = Object.keys(sizes).filter((f) => html.includes(`/assets/${f}`));
    const main = initial.reduce((a, f) => a + sizes[f].gzip, 0);
    metrics.bundle = { initialFiles: initial, initialGzipBytes: main, files: sizes };
    assert.ok(initial.some((f) => f.endsWith('.js')));
    assert.ok(!initial.some((f) => f.startsWith('map-')), 'the map chunk loads separately');
  });
});
