import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The build is committed and embedded in the control plane (package console), so its output must depend
// only on the sources and the lockfile: content-hashed names, no timestamps.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../services/controlplane/internal/console/dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    reportCompressedSize: false,
    // One chunk on purpose: the whole console is ~155 KB gzipped, under the 300 KB budget for the first page.
    chunkSizeWarningLimit: 800,
  },
  server: {
    // `npm run dev` proxies the API to a control plane from `go tool task dev`.
    proxy: { "^/orrery\\.": "http://127.0.0.1:8080" },
  },
});
