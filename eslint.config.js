import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * The functional core and the effectful shell (STYLE.md, README "Architecture"). The core
 * folders are pure: no clock, no I/O, no randomness. They may not import the shell, nor
 * Node's modules that reach files, the network, processes or the host; `node:crypto` stays
 * allowed for hashing and signatures (keys are passed in), but not its random generators.
 * test/architecture.test.ts shows that this configuration refuses what it should.
 */
const CORE_FOLDERS = ["cel", "policy", "layering", "decision", "governance", "bundle", "canonical", "audit", "source", "intents", "trust"];
const SHELL_FOLDERS = ["hub", "agent", "store", "client", "cli", "files", "identity", "kube"];

const NODE_IO = [
  "fs",
  "fs/promises",
  "net",
  "http",
  "https",
  "http2",
  "tls",
  "dgram",
  "dns",
  "dns/promises",
  "child_process",
  "cluster",
  "worker_threads",
  "readline",
  "readline/promises",
  "os",
  "process",
  "timers",
  "timers/promises",
  "perf_hooks",
  "inspector",
];
/** Libraries that only the shell uses: servers, databases, certificates. */
const SHELL_LIBRARIES = ["fastify", "pg", "@electric-sql/pglite", "@peculiar/x509"];
const RANDOM = ["randomBytes", "randomFill", "randomFillSync", "randomInt", "randomUUID", "generateKey", "generateKeySync", "generateKeyPair", "generateKeyPairSync", "generatePrime", "generatePrimeSync", "getRandomValues", "webcrypto"];

/**
 * The shell as seen from a file `depth` folders below a core folder: exactly enough `../`
 * to reach src/, then a shell folder. Counting them keeps a core subfolder that happens to
 * share a shell folder's name (policy/library/files, say) from being mistaken for it.
 */
function shellPattern(depth) {
  const up = depth < 0 ? "\\./" : `(\\.\\./){${depth + 1}}`;
  return {
    regex: `^${up}(${SHELL_FOLDERS.join("|")})(/|$)`,
    message: "the core is pure: it may not import the shell (hub, agent, store, client, cli, files, identity, kube); pass what it needs in, or move the code to the shell",
  };
}

function coreRules(depth, { pure }) {
  const pattern = shellPattern(depth);
  if (!pure) return { "no-restricted-imports": ["error", { patterns: [pattern] }] };
  return {
    "no-restricted-imports": [
      "error",
      {
        paths: [
          ...NODE_IO.flatMap((name) => [`node:${name}`, name]).map((name) => ({
            name,
            message: "the core is pure: no files, network, processes or host; read and write in the shell (src/files, src/hub, src/agent, src/cli) and pass the data in",
          })),
          ...SHELL_LIBRARIES.map((name) => ({ name, message: "a library of the shell: servers, databases and certificates stay out of the core" })),
          ...["node:crypto", "crypto"].map((name) => ({
            name,
            importNames: RANDOM,
            message: "the core has no randomness: hashing and signing are fine, but keys, ids and nonces are made in the shell and passed in",
          })),
        ],
        patterns: [pattern],
      },
    ],
    "no-restricted-globals": [
      "error",
      ...["process", "setTimeout", "setInterval", "setImmediate", "queueMicrotask", "fetch", "performance", "crypto"].map((name) => ({
        name,
        message: "the core is pure: no process, timers, network, clock or randomness; pass what it needs in",
      })),
    ],
    "no-restricted-properties": [
      "error",
      { object: "Date", property: "now", message: "the core has no clock: take `now` as an argument" },
      { object: "Math", property: "random", message: "the core has no randomness: take what it needs as an argument" },
    ],
    "no-restricted-syntax": [
      "error",
      { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: "the core has no clock: take `now` as an argument" },
      // A module loaded at run time would slip past the import rules above.
      { selector: "ImportExpression", message: "the core imports statically, so that these rules see every dependency" },
    ],
  };
}

/** One entry per depth below src/ (src/errors.ts is depth -1), for the code and for its tests. */
function coreBoundaries() {
  const configs = [];
  const folders = `{${CORE_FOLDERS.join(",")}}`;
  for (let depth = -1; depth <= 4; depth++) {
    const base = depth < 0 ? "src" : `src/${folders}${"/*".repeat(depth)}`;
    const code = depth < 0 ? ["src/errors.ts"] : [`${base}/*.ts`];
    configs.push({ files: code, ignores: ["**/*.test.ts"], rules: coreRules(depth, { pure: true }) });
    // Tests beside the core may read fixtures and make keys; they still may not reach the shell.
    if (depth >= 0) configs.push({ files: [`${base}/*.test.ts`], rules: coreRules(depth, { pure: false }) });
  }
  return configs;
}

export default tseslint.config(
  { ignores: ["dist/", "build/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  ...coreBoundaries(),
  {
    files: ["bin/**/*.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
