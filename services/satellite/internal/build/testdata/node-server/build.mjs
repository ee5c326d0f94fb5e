// The build step: copies the server into dist/, stamping the version the archive carries in VERSION.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";

const version = existsSync("VERSION") ? readFileSync("VERSION", "utf8").trim() : "dev";
mkdirSync("dist", { recursive: true });
const source = readFileSync("src/server.js", "utf8").replace("__VERSION__", version);
writeFileSync("dist/server.js", source);
console.log(`built version ${version}`);
