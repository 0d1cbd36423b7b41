/// <reference lib="dom" />
/**
 * The browser half of `tests/console_test.ts`, run under Node through tsx (puppeteer-core is a
 * Node library; under Deno its WebSocket transport is not needed and not tried). Opens the web
 * console at `--url` in headless Chromium (`--chromium PATH`), visits every page (a screenshot
 * of each into `--out DIR`), runs a filtered search from the playground and prints one JSON
 * line: the results as the page shows them. Exits non-zero with the reason on stderr.
 *
 * Flags: --url URL --chromium PATH --out DIR --collection NAME --vector JSON --filter JSON --k N
 * @module
 */
import process from "node:process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

function flag(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`--${name} is required`);
  return process.argv[i + 1];
}

const url = flag("url");
const out = flag("out");
mkdirSync(out, { recursive: true });
const browser = await puppeteer.launch({
  executablePath: flag("chromium"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const problems: string[] = [];
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  // A CSP violation or a script error in the console is a failure of this test.
  page.on("pageerror", (e) => problems.push(`page error: ${e}`));
  page.on("console", (m) => {
    // Expected refusals, logged by Chromium: 401 before the key is typed, 403 for the create
    // tried with the read key.
    if (m.type() === "error" && !/status of 40[13]/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  // Every request the page makes: the API key must travel only to the console's own origin.
  const origin = new URL(url).origin;
  let keyed = 0;
  const keyedElsewhere: string[] = [];
  page.on("request", (r) => {
    if (r.headers().authorization === undefined) return;
    if (new URL(r.url()).origin === origin) keyed++;
    else keyedElsewhere.push(r.url());
  });
  // First load: the API answers 401, the console shows its key form; the key is typed once.
  await page.goto(`${url}/#cluster`, { waitUntil: "load" });
  await page.waitForSelector("#key-form:not([hidden])", { timeout: 15_000 });
  await page.type("#key-input", flag("key"));
  await page.click("#key-form button[type=submit]");
  const visit = async (name: string, ready: string) => {
    await page.goto(`${url}/#${name}`, { waitUntil: "load" });
    await page.waitForSelector(ready, { timeout: 15_000 });
    await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
  };
  await visit("cluster", "#members tbody tr");
  const members = await page.$$eval("#members tbody tr", (rows) => rows.length);
  const ring = await page.$$eval("svg path", (paths) => paths.length);
  await visit("collections", "#collections tbody tr");
  const collections = await page.$$eval(
    "#collections tbody tr",
    (rows) =>
      rows.map((r) => [
        r.getAttribute("data-collection"),
        r.querySelector(".count")?.textContent,
        r.querySelector(".tombstones")?.textContent,
      ]),
  );
  // Creating needs the admin key; with the read key the form shows the API's refusal.
  await page.type("#create-form input[name=name]", "made_in_ui");
  await page.type("#create-form input[name=dimension]", "4");
  await page.click("#create-form button[type=submit]");
  await page.waitForSelector("#collections-message .error", { timeout: 15_000 });
  const create_refused = await page.$eval("#collections-message .error", (e) => e.textContent);
  await page.goto(`${url}/#search`, { waitUntil: "load" });
  await page.waitForSelector("#search-form select[name=collection] option");
  await page.select("#search-form select[name=collection]", flag("collection"));
  await page.$eval(
    "#search-form textarea[name=vector]",
    (e, v) => ((e as HTMLTextAreaElement).value = v),
    flag("vector"),
  );
  await page.$eval(
    "#search-form textarea[name=filter]",
    (e, v) => ((e as HTMLTextAreaElement).value = v),
    flag("filter"),
  );
  await page.$eval(
    "#search-form input[name=k]",
    (e, v) => ((e as HTMLInputElement).value = v),
    flag("k"),
  );
  await page.click("#search-form button[type=submit]");
  await page.waitForSelector("#results tbody tr, #search-results .error", { timeout: 15_000 });
  const error = await page.$eval(
    "#search-results",
    (e) => e.querySelector(".error")?.textContent ?? null,
  );
  if (error !== null) throw new Error(`the playground showed an error: ${error}`);
  const summary = await page.$eval("#search-summary", (e) => e.textContent);
  const results = await page.$$eval("#results tbody tr", (rows) =>
    rows.map((r) => ({
      id: r.querySelector(".id")!.textContent,
      distance: r.querySelector(".distance")!.textContent,
      payload: r.querySelector(".payload")!.textContent,
    })));
  await page.screenshot({ path: join(out, "search.png"), fullPage: true });
  await visit("recall", "#recall");
  const recall = await page.$$eval(
    "#recall tbody tr",
    (rows) => rows.map((r) => Array.from(r.querySelectorAll("td"), (td) => td.textContent)),
  );
  await page.goto(`${url}/#charts`, { waitUntil: "load" });
  await page.waitForSelector("#charts svg", { timeout: 15_000 });
  await page.waitForFunction(
    () => Number(document.querySelector("#page")!.getAttribute("data-loaded")) >= 2,
    { timeout: 15_000 },
  );
  await page.screenshot({ path: join(out, "charts.png"), fullPage: true });
  const charts = await page.$$eval("#charts .chart", (c) => c.length);
  const session_key = await page.evaluate(() => sessionStorage.getItem("vectordb.api_key"));
  const local_storage = await page.evaluate(() => localStorage.length);
  console.log(JSON.stringify({
    members,
    ring,
    collections,
    summary,
    results,
    recall,
    charts,
    problems,
    asked_for_key: true,
    create_refused,
    session_key,
    local_storage,
    keyed_requests: keyed,
    keyed_elsewhere: keyedElsewhere,
  }));
} finally {
  await browser.close();
}
