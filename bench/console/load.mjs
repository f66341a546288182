// First load of /console in Debian's chromium (headless, playwright-core from console/node_modules),
// cold (a fresh browser context: empty cache) then warm (a reload in the same context), for each
// target in turn, round after round (so the targets share the machine's load). Prints one JSON
// object: {rounds: [{target, mode, wall_ms, ttfb_ms, dcl_ms, load_ms, fcp_ms, transfer_bytes, requests}]}.
// Usage: node bench/console/load.mjs '{"targets": {"gateway": "http://127.0.0.1:8080"}, "rounds": 10}'
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(fileURLToPath(new URL("../../console/package.json", import.meta.url)));
const { chromium } = require("playwright-core");
const { targets, rounds = 10, chromium: exe = "/usr/bin/chromium" } = JSON.parse(process.argv[2]);

const browser = await chromium.launch({
  executablePath: exe,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

async function measure(page, start) {
  await page.getByLabel("API key or JWT").waitFor(); // the app rendered its first view
  const wall = Date.now() - start;
  const t = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const res = performance.getEntriesByType("resource");
    const fcp = performance.getEntriesByName("first-contentful-paint")[0];
    return {
      ttfb_ms: nav.responseStart,
      dcl_ms: nav.domContentLoadedEventEnd,
      load_ms: nav.loadEventEnd,
      fcp_ms: fcp ? fcp.startTime : null,
      transfer_bytes: nav.transferSize + res.reduce((s, r) => s + r.transferSize, 0),
      requests: 1 + res.length,
    };
  });
  return { wall_ms: wall, ...t };
}

const out = [];
try {
  for (let i = 0; i < rounds; i++) {
    for (const [target, url] of Object.entries(targets)) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await context.newPage();
      let start = Date.now();
      await page.goto(`${url}/console/`, { waitUntil: "load" });
      out.push({ target, mode: "cold", round: i, ...(await measure(page, start)) });
      start = Date.now();
      await page.reload({ waitUntil: "load" });
      out.push({ target, mode: "warm", round: i, ...(await measure(page, start)) });
      await context.close();
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ rounds: out }));
