// The admin page's live view in headless Chromium (Debian's chromium,
// driven by playwright-core) while calls are up through a gateway between
// pbxsim and cloudsim: the first password, then the Calls view, which
// must list every call up with both legs' media addresses, its codec, its
// duration and both directions' MOS from the relays' figures; the calls
// that ended with their quality; and the hour's charts (calls up, packets
// a second, MOS bands) drawn by the bundled uPlot with the calls in them.
// Then the same view at a phone's width: nothing wider than the window,
// each call a card of its own. Screenshots kept.
//
// Run by tests/tests/live_view.rs, which starts the peers and the calls.
// Environment: PBXLINK_PAGE (https://…/), PBXLINK_ARTIFACTS,
// PBXLINK_CALLS_UP (calls up through the test), PBXLINK_CALLS_ENDED (at
// least this many ended before).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const url = process.env.PBXLINK_PAGE;
const out = process.env.PBXLINK_ARTIFACTS;
const up = Number(process.env.PBXLINK_CALLS_UP);
const ended = Number(process.env.PBXLINK_CALLS_ENDED);
if (!url || !out || !up || !ended) {
  console.error("needs PBXLINK_PAGE, PBXLINK_ARTIFACTS, PBXLINK_CALLS_UP and PBXLINK_CALLS_ENDED");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const say = (what) => console.log(`browser: ${what}`);
const expect = (ok, what) => { if (!ok) throw new Error(`expected: ${what}`); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });

async function snap(name) {
  const file = join(out, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  say(`screenshot ${file}`);
}

// What the view shows, read from the page itself.
const view = () => page.evaluate(() => {
  const rows = Array.from(document.querySelectorAll("#live-calls tbody tr[data-call]")).map((tr) => {
    const cells = {};
    for (const td of tr.querySelectorAll("td")) cells[td.dataset.label] = td.textContent;
    return cells;
  });
  const recent = document.querySelectorAll("#recent-calls tbody tr").length;
  const charts = {};
  for (const [id, u] of Object.entries(live.charts)) charts[id] = u.data.map((s) => Array.from(s));
  const canvases = document.querySelectorAll("#view-calls .chart canvas").length;
  return { rows, recent, charts, canvases };
});

try {
  await page.goto(url);
  await page.locator("#access-title", { hasText: "Set the admin password" }).waitFor();
  await page.fill("#password", "Gat3way!Secure");
  await page.fill("#password-confirm", "Gat3way!Secure");
  await page.click("#access-submit");
  await page.locator("#nav:not([hidden])").waitFor();
  await page.click('#nav [data-view="calls"]');
  await page.locator("#view-calls:not([hidden])").waitFor();

  // Every call up, with its figures: the MOS cells hold numbers once the
  // relays have answered, and the calls chart has a sample with them all.
  const deadline = Date.now() + 40_000;
  let v;
  for (;;) {
    v = await view();
    const rated = v.rows.filter((r) => /^\d\.\d\d/.test(r["MOS to PBX"]) && /^\d\.\d\d/.test(r["MOS to cloud"]));
    const calls = v.charts["#chart-calls"];
    // Two samples with every call up: the second has their packet rate.
    const sampled = calls && calls[1].filter((n) => n === up).length >= 2;
    if (rated.length === up && v.recent >= ended && sampled) break;
    if (Date.now() > deadline) throw new Error(`the view never showed ${up} rated calls, ${ended} ended and two samples of ${up} calls up: ${JSON.stringify(v)}`);
    await page.waitForTimeout(500);
  }
  for (const r of v.rows) {
    say(`call up: ${JSON.stringify(r)}`);
    expect(r.Codec === "PCMA", `the codec named: ${r.Codec}`);
    expect(/\d+\.\d+\.\d+\.\d+:\d+ · in: [\d.]+ % lost, jitter/.test(r["PBX leg"]), `the PBX leg's address and figures: ${r["PBX leg"]}`);
    expect(/\d+\.\d+\.\d+\.\d+:\d+ · in: [\d.]+ % lost, jitter/.test(r["Cloud leg"]), `the cloud leg's address and figures: ${r["Cloud leg"]}`);
    expect(/\d+ s$/.test(r.Duration), `a duration: ${r.Duration}`);
    expect(parseFloat(r["MOS to PBX"]) > 4 && parseFloat(r["MOS to cloud"]) > 4, "clean calls rate above 4");
  }
  say(`${v.rows.length} calls up listed with their figures; ${v.recent} ended calls listed`);
  expect(v.canvases === 3, `three charts drawn (${v.canvases} canvases)`);
  const pps = v.charts["#chart-packets"][1];
  expect(pps.some((n) => n > up * 50), `packets a second charted above ${up * 50}/s: ${pps}`);
  const mos = v.charts.mos[1];
  expect(mos.reduce((a, b) => a + b, 0) >= ended, `the ended calls in the MOS bands: ${mos}`);
  say(`charts: calls up ${v.charts["#chart-calls"][1]}, packets/s ${pps}, MOS bands ${mos}`);
  await snap("live-calls");

  // A phone: nothing wider than the window, each call its own card.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(600);
  const faults = await page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const out = [];
    if (document.documentElement.scrollWidth > vw) out.push(`the page is ${document.documentElement.scrollWidth} px wide in ${vw} px`);
    for (const el of document.querySelectorAll("#view-calls .chart, #live-calls tr, #recent-calls tr")) {
      const r = el.getBoundingClientRect();
      if (r.right > vw + 0.5) out.push(`${el.id || el.tagName} ends at ${Math.round(r.right)} px`);
    }
    const head = document.querySelector("#live-calls thead");
    if (getComputedStyle(head).display !== "none") out.push("the table's head shows on a phone");
    return out;
  });
  await snap("live-calls-390px");
  expect(faults.length === 0, `the view fits 390 px: ${faults.join("; ")}`);
  say("the view fits 390 px");
  expect(problems.length === 0, `no errors in the page: ${problems.join("; ")}`);
  say("passed");
} catch (e) {
  await snap("failed").catch(() => {});
  console.error(`browser: FAILED: ${e.message}`);
  for (const p of problems) console.error(`browser: ${p}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
