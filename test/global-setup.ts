/**
 * Builds dist/ once per test run, so that tests which spawn the real binary
 * (`node bin/polity.js`) run the code under test, not a stale build. The build is skipped
 * when every compiled file is newer than its source. A failed build does not stop the
 * run: tests that need the binary read the failure with inject("distBuildError") and fail
 * with the compiler's output; tests that run in-process are unaffected.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** Why `npm run build` failed, or null when dist/ is current. */
    distBuildError: string | null;
  }
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [full] : [];
  });
}

/** Whether some source file is newer than its compiled output, or has none. */
function distIsStale(): boolean {
  const src = join(ROOT, "src");
  const config = statSync(join(ROOT, "tsconfig.build.json")).mtimeMs;
  return sources(src).some((file) => {
    const compiled = join(ROOT, "dist", relative(src, file).replace(/\.ts$/, ".js"));
    if (!existsSync(compiled)) return true;
    const built = statSync(compiled).mtimeMs;
    return built < statSync(file).mtimeMs || built < config;
  });
}

export default function setup(project: TestProject): void {
  let error: string | null = null;
  if (distIsStale()) {
    const build = spawnSync("npm", ["run", "--silent", "build"], { cwd: ROOT, encoding: "utf8" });
    if (build.status !== 0) {
      error = `npm run build failed (${build.error?.message ?? `exit ${build.status}`}):\n${build.stdout}${build.stderr}`;
    }
  }
  project.provide("distBuildError", error);
}
