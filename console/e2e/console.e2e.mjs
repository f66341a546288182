// The console in a real browser (Debian's chromium, driven by playwright-core) against a gateway,
// registry and model server started by services/gateway/tests/console/test_console_browser.py.
// Env: CONSOLE_URL (gateway origin), KEY_A / KEY_B (tenant keys), MODEL_A / MODEL_B (their models),
// ADMIN_KEY, TENANT_A, JWT_B (a JWT of tenant B's), ARTIFACT (an ONNX file to upload), SCREENSHOTS (a git-ignored folder). Every step waits for selectors; no fixed sleeps. Exit 0 = pass.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("CONSOLE_URL");
const SHOTS = env("SCREENSHOTS");
const [KEY_A, KEY_B, MODEL_A, MODEL_B] = ["KEY_A", "KEY_B", "MODEL_A", "MODEL_B"].map(env);
const TIMEOUT = Number(process.env.STEP_TIMEOUT_MS ?? 20000);
mkdirSync(SHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
context.setDefaultTimeout(TIMEOUT);
const page = await context.newPage();
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => {
  // A refused request logs "Failed to load resource" (the sign-in with a wrong key, a model the
  // tenant may not see, a service not started here); anything else is a bug (CSP included).
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
});

const PIPELINE = `${MODEL_A}-pipeline`;
const pipeline = (source) => ({
  name: PIPELINE,
  inputs: [{ name: "x", datatype: "FP32", shape: [-1, 4] }],
  nodes: [{ name: "n1", model: { model: { name: MODEL_A }, inputs: [{ name: "features", source }], outputs: ["probabilities"] } }],
  outputs: [{ name: "p", sources: ["n1.probabilities"] }],
});

/** A call as tenant A outside the browser (the "someone else" of a concurrent change). */
async function api(method, path, body) {
  const r = await fetch(`${BASE}${path}`, { method, headers: { "x-api-key": KEY_A, "content-type": "application/json" }, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}
async function deployedWeights() {
  const d = await api("GET", `/v1/models/${MODEL_A}/deployment`);
  return d.deployment.targets.map((t) => `${t.version || t.versionNumber}:${t.weight ?? 0}`).join();
}

let current = "start";
async function step(name, fn) {
  current = name;
  const started = Date.now();
  await fn();
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

async function signIn(key) {
  await page.goto(`${BASE}/console/`);
  await page.getByLabel("API key or JWT").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "main" }).waitFor();
}

async function modelNames() {
  await page.goto(`${BASE}/console/#/models`);
  await page.locator("table.models tbody tr").first().waitFor();
  return page.locator("table.models tbody tr td:first-child").allInnerTexts();
}

try {
  await step("01-sign-in-refused", async () => {
    await page.goto(`${BASE}/console/`);
    await page.getByLabel("API key or JWT").fill("not-a-key");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = await page.getByRole("alert").innerText();
    if (!alert.startsWith("401")) throw new Error(`expected a 401 message, got ${alert}`);
    if (await page.evaluate(() => sessionStorage.length) !== 0) throw new Error("a refused key was kept");
  });
  await step("02-overview", async () => {
    await signIn(KEY_A);
    if (page.url().includes(KEY_A)) throw new Error("the key is in the URL");
    await page.locator("ul.health li").first().waitFor();
    await page.getByText("gateway: ok").waitFor();
    await page.locator("section[aria-label='model readiness'] .ok").filter({ hasText: "1 ready" }).waitFor();
  });
  await step("03-models-tenant-a", async () => {
    const names = await modelNames();
    if (!names.includes(MODEL_A) || names.includes(MODEL_B)) throw new Error(`tenant A sees ${names}`);
  });
  await step("04-model-page", async () => {
    await page.getByRole("link", { name: MODEL_A }).click();
    await page.getByRole("heading", { name: MODEL_A }).waitFor();
    await page.locator("table[aria-label='versions'] tbody tr").filter({ hasText: "ready" }).first().waitFor();
    await page.getByRole("button", { name: "Review change" }).waitFor();
  });
  await step("05-try-it", async () => {
    await page.locator("textarea[name='features.values']").fill("[5.1, 3.5, 1.4, 0.2]");
    await page.getByRole("button", { name: "Send" }).click();
    const out = await page.locator("[aria-label='inference result'] pre.output").innerText();
    const body = JSON.parse(out);
    const names = body.outputs.map((o) => o.name).sort();
    if (names.join() !== "label,probabilities") throw new Error(`outputs ${names}`);
    const meta = await page.locator("[aria-label='inference result'] p").innerText();
    if (!/ms · served version 1/.test(meta)) throw new Error(`latency/version line: ${meta}`);
    await page.getByText("curl and Python").click();
    await page.getByText(`/v2/models/${MODEL_A}/infer`).first().waitFor();
  });
  await step("05b-overview-live-charts", async () => {
    await page.goto(`${BASE}/console/#/`);
    const card = page.locator("section[aria-label='model charts'] .card").filter({ has: page.getByRole("heading", { name: MODEL_A, exact: true }) });
    await card.getByRole("img", { name: "latency p50 / p99 chart" }).waitFor();
    await card.getByRole("img", { name: "queue time mean / p99 chart" }).waitFor();
    await card.getByRole("img", { name: "batch size mean / max chart" }).waitFor();
    // traffic from outside the browser until a poll interval with requests shows its percentiles
    const body = { inputs: [{ name: "features", datatype: "FP32", shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] }] };
    const latest = card.getByLabel(`latest ${MODEL_A}`);
    const deadline = Date.now() + 3 * TIMEOUT; // two polls (3 s apart) with traffic between them, on a loaded machine
    while (!/p99 \d/.test(await latest.innerText())) {
      if (Date.now() > deadline) throw new Error(`no percentiles shown: ${await latest.innerText()}`);
      await api("POST", `/v2/models/${MODEL_A}/infer`, body);
    }
    const text = await latest.innerText();
    if (!/p50 \d+\.\d+ ms · p99 \d+\.\d+ ms · queue \d+\.\d+ ms · batch \d/.test(text)) throw new Error(`latest line: ${text}`);
  });
  await step("06-deploy-90-10", async () => {
    await page.goto(`${BASE}/console/#/models/${MODEL_A}`);
    await page.getByRole("button", { name: "v2" }).click();
    await page.getByLabel("weight v1", { exact: true }).fill("90");
    await page.getByLabel("weight v2", { exact: true }).fill("20");
    await page.getByText("weights must sum to 100, they sum to 110").waitFor();
    if (!(await page.getByRole("button", { name: "Review change" }).isDisabled())) throw new Error("110% could be applied");
    await page.getByLabel("weight v2", { exact: true }).fill("10");
    await page.getByRole("button", { name: "Review change" }).click();
    await page.locator("[aria-label='deployment diff']").getByText("v1 100% → v1 90%").waitFor();
    await page.locator("[aria-label='deployment diff']").getByText("+ v2 10%").waitFor();
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator("p[role=status].ok").filter({ hasText: "applied" }).waitFor();
    const weights = await deployedWeights();
    if (weights !== "1:90,2:10") throw new Error(`deployed ${weights}`);
  });
  await step("07-concurrent-change-reported", async () => {
    await page.goto(`${BASE}/console/#/models/${MODEL_A}`);
    await page.reload();
    await page.locator("table[aria-label='versions'] tbody tr").nth(1).waitFor();
    await page.getByLabel("weight v1", { exact: true }).waitFor();
    // someone else changes the deployment after the page loaded it
    await api("PUT", `/v1/models/${MODEL_A}/deployment`, { targets: [{ version: "1", weight: 100 }] });
    await page.getByLabel("weight v1", { exact: true }).fill("50");
    await page.getByLabel("weight v2", { exact: true }).fill("50");
    await page.getByRole("button", { name: "Review change" }).click();
    await page.getByRole("button", { name: "Apply" }).click();
    await page.getByText("the deployment was changed by someone else").waitFor();
    const weights = await deployedWeights();
    if (weights !== "1:100") throw new Error(`the concurrent change was overwritten: ${weights}`);
  });
  await step("07b-rollback", async () => {
    // the deployment before the last change (someone else's 1:100) was the 90/10 of step 06
    await page.goto(`${BASE}/console/#/models/${MODEL_A}`);
    await page.reload();
    await page.getByRole("button", { name: "Roll back to previous deployment" }).click();
    await page.getByText("rolled back to the previous deployment").waitFor();
    const weights = await deployedWeights();
    if (weights !== "1:90,2:10") throw new Error(`rollback left ${weights}`);
  });
  await step("08-upload-version", async () => {
    await page.locator("input[name=artifact]").setInputFiles(env("ARTIFACT"));
    await page.getByRole("button", { name: "Upload" }).click();
    await page.getByText("uploaded v3").waitFor();
    await page.locator("table[aria-label='versions'] tbody tr").nth(2).waitFor();
  });
  await step("09-pipeline-validation-error", async () => {
    await page.goto(`${BASE}/console/#/pipelines`);
    await page.locator("textarea[name=pipeline]").fill(JSON.stringify(pipeline("inputs.nope")));
    await page.getByRole("button", { name: "Create" }).click();
    const alert = await page.getByRole("alert").innerText();
    if (!alert.startsWith("node n1:") || !alert.includes("nope")) throw new Error(`validation error: ${alert}`);
    console.log(`  validation error shown: ${alert}`);
  });
  await step("10-pipeline-created", async () => {
    await page.locator("textarea[name=pipeline]").fill(JSON.stringify(pipeline("inputs.x")));
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByRole("status").filter({ hasText: `created ${PIPELINE}` }).waitFor();
    await page.getByRole("link", { name: PIPELINE }).waitFor();
  });
  await step("11-execution-succeeded", async () => {
    await page.getByRole("link", { name: PIPELINE }).click();
    await page.locator("textarea[name='x.values']").fill("[5.1, 3.5, 1.4, 0.2]");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByRole("heading", { name: /^Execution / }).waitFor();
    await page.locator("strong.state").filter({ hasText: /^SUCCEEDED$/ }).waitFor({ timeout: 40000 });
    await page.locator("ol.timeline li").filter({ hasText: "n1" }).waitFor();
    const out = JSON.parse(await page.locator("pre.output").innerText());
    if (out[0]?.name !== "p" || out[0].data.length !== 3) throw new Error(`outputs ${JSON.stringify(out)}`);
  });
  await step("12-models-390px", async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    await modelNames();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`the page is ${overflow}px wider than a 390px screen`);
    await page.setViewportSize({ width: 1280, height: 800 });
  });
  await step("12b-jwt-sign-in-tenant-b", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(env("JWT_B"));
    if (page.url().includes(env("JWT_B"))) throw new Error("the JWT is in the URL");
    if ((await context.cookies()).length) throw new Error("a cookie was set");
    const names = await modelNames();
    if (!names.includes(MODEL_B) || names.includes(MODEL_A)) throw new Error(`the JWT user of tenant B sees ${names}`);
    await page.goto(`${BASE}/console/#/`);
    const cards = page.locator("section[aria-label='model charts'] .card h3");
    await cards.filter({ hasText: MODEL_B }).waitFor();
    const charted = await cards.allInnerTexts();
    if (charted.includes(MODEL_A)) throw new Error(`the JWT user of tenant B sees statistics of ${charted}`);
    await page.goto(`${BASE}/console/#/models/${MODEL_A}`);
    await page.locator("section[aria-label='try it'] .error").filter({ hasText: "404" }).waitFor();
  });
  await step("13-tenant-b-isolated", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(KEY_B);
    const names = await modelNames();
    if (!names.includes(MODEL_B) || names.includes(MODEL_A)) throw new Error(`tenant B sees ${names}`);
    await page.goto(`${BASE}/console/#/models/${MODEL_A}`);
    await page.locator("section[aria-label='try it'] .error").filter({ hasText: "404" }).waitFor();
  });
  await step("14-delete-model", async () => {
    await page.goto(`${BASE}/console/#/models/${MODEL_B}`);
    await page.getByRole("heading", { name: MODEL_B }).waitFor();
    page.on("dialog", (d) => d.accept());
    // a deployed model is refused, with the registry's reason shown
    await page.getByRole("button", { name: "Delete model…" }).click();
    await page.getByRole("alert").filter({ hasText: "undeploy it first" }).waitFor();
    await page.getByRole("button", { name: "Undeploy…" }).click();
    await page.locator("p[role=status].ok").filter({ hasText: "applied" }).waitFor();
    await page.getByRole("button", { name: "Delete model…" }).click();
    await page.waitForURL(/#\/models$/);
    await page.getByRole("table", { name: "models" }).waitFor();
    await page.waitForFunction((m) => !document.querySelector("table.models")?.textContent?.includes(m), MODEL_B);
  });
  await step("15-rotate-key", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(env("ADMIN_KEY"));
    await page.goto(`${BASE}/console/#/tenants`);
    const tenant = page.locator(`section[aria-label="tenant ${env("TENANT_A")}"]`);
    await tenant.locator("input[name=keyName]").fill("rotated");
    // a burst without a rate is refused in the form, before anything is sent
    await tenant.locator("input[name=burst]").fill("100");
    await tenant.getByRole("alert", { name: "key form errors" }).filter({ hasText: "burst needs a rate limit" }).waitFor();
    if (!(await tenant.getByRole("button", { name: "Create key" }).isDisabled())) throw new Error("a burst without a rate could be sent");
    await tenant.locator("input[name=rps]").fill("50");
    await tenant.locator("input[name=expires]").fill("2099-01-01T00:00");
    await tenant.getByRole("button", { name: "Create key" }).click();
    const row = tenant.locator("tr[data-key=rotated]");
    await row.filter({ hasText: "50/s, burst 100" }).waitFor();
    await row.filter({ hasText: /expires 2099-01-0[12]T/ }).waitFor();
    const oldSecret = await tenant.locator(".secret code").innerText();
    if ((await fetch(`${BASE}/v1/models`, { headers: { "x-api-key": oldSecret } })).status !== 200) throw new Error("the new key does not work");
    await tenant.locator("input[name=grace]").fill("1");
    await tenant.locator("tr[data-key=rotated]").getByRole("button", { name: "rotate" }).click();
    await tenant.locator(".secret code").filter({ hasNotText: oldSecret }).waitFor();
    const newSecret = await tenant.locator(".secret code").innerText();
    // the old secret works for the grace (1 s) and is refused after it; poll with a deadline
    const deadline = Date.now() + 30000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await fetch(`${BASE}/v1/models`, { headers: { "x-api-key": oldSecret } })).status;
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    if (status !== 401) throw new Error(`the old secret still answers ${status} after the grace`);
    if ((await fetch(`${BASE}/v1/models`, { headers: { "x-api-key": newSecret } })).status !== 200) throw new Error("the new secret is refused");
  });
  await step("16-api-reference", async () => {
    await page.goto(`${BASE}/docs`);
    await page.locator(".swagger-ui .info .title").waitFor();
    await page.locator(".opblock-tag").first().waitFor();
  });
  if (problems.length) {
    current = "browser-console";
    throw new Error(problems.join("\n"));
  }
  console.log("all steps passed");
} catch (err) {
  await page.screenshot({ path: join(SHOTS, `failed-${current}.png`), fullPage: true }).catch(() => {});
  console.error(`FAILED at ${current}: ${err.stack ?? err}`);
  if (problems.length) console.error(problems.join("\n"));
  process.exitCode = 1;
} finally {
  await browser.close();
}
