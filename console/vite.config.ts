import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// The build lands inside the gateway package, which serves it at /console (git-ignored there).
export const OUT_DIR = "../services/gateway/src/modelserve_gateway/assets/console";

export default defineConfig({
  base: "/console/",
  plugins: [preact()],
  build: {
    outDir: OUT_DIR,
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts?(x)"],
    // the default 5 s is not enough for a jsdom render on a loaded shared machine (no test is timed)
    testTimeout: 30000,
  },
});
