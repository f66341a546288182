// After `vite build`: the OpenAPI viewer (swagger-ui-dist, local files, no CDN) under docs/,
// a .gitignore that keeps the build out of git, and the JavaScript size check (gzip, 400 kB).
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "services/gateway/src/modelserve_gateway/assets/console");
const swagger = join(here, "..", "node_modules/swagger-ui-dist");
const docs = join(out, "docs");
mkdirSync(docs, { recursive: true });
for (const f of ["swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"]) copyFileSync(join(swagger, f), join(docs, f));
copyFileSync(join(here, "..", "docs", "index.html"), join(docs, "index.html"));
copyFileSync(join(here, "..", "docs", "init.js"), join(docs, "init.js"));
writeFileSync(join(out, ".gitignore"), "# built by console/ (npm run build); never committed\n*\n");

const LIMIT = 400 * 1024;
let total = 0;
for (const f of readdirSync(join(out, "assets"))) {
  if (f.endsWith(".js")) total += gzipSync(readFileSync(join(out, "assets", f))).length;
}
console.log(`console JavaScript: ${(total / 1024).toFixed(1)} kB gzipped (limit ${LIMIT / 1024} kB)`);
if (total > LIMIT) {
  console.error("console JavaScript exceeds the 400 kB gzipped budget");
  process.exit(1);
}

