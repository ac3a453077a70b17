/** A thread of the benchmarks' fleet (bench/fleet.ts): its agents, their long polls and their verifications. */
import { createPublicKey } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { closeConnections } from "../src/client/http.js";
import { LightAgent, Verifications } from "./agent.js";
import type { FleetAnswer, FleetRequest } from "./fleet.js";

const port = parentPort!;
const verifications = new Verifications();
const agents: LightAgent[] = [];
const loops: Promise<void>[] = [];
/** Since arming: the version each agent held, and when it held a newer one. */
let held: number[] = [];
let arrived: number[] = [];
let waiting = 0;
let allArrived: () => void = () => undefined;

const answer = (a: FleetAnswer) => port.postMessage(a);

port.on("message", (request: FleetRequest) => {
  void handle(request).then(answer, (error: unknown) => {
    console.error(`fleet thread: ${request.op} failed: ${error instanceof Error ? error.message : String(error)}`);
    answer({ id: request.id });
  });
});

async function handle(request: FleetRequest): Promise<FleetAnswer> {
  switch (request.op) {
    case "add": {
      const keys = new Map<string, ReturnType<typeof createPublicKey>>();
      for (const m of request.members) {
        let publicKey = keys.get(m.bundleKeyPem);
        if (publicKey === undefined) keys.set(m.bundleKeyPem, (publicKey = createPublicKey(m.bundleKeyPem)));
        agents.push(new LightAgent(m.url, m.creds, { publicKey, federation: m.federation, region: m.region, cluster: m.creds.cluster }, verifications));
      }
      return { id: request.id };
    }
    case "start": {
      const wave = agents.slice(request.from, request.to);
      await Promise.all(
        wave.map((a) => {
          const first = new Promise<void>((resolve) => (a.onBundle = () => resolve()));
          loops.push(a.run());
          return first;
        }),
      );
      return { id: request.id };
    }
    case "arm": {
      held = agents.map((a) => a.version);
      arrived = new Array<number>(agents.length).fill(Number.NaN);
      waiting = agents.length;
      agents.forEach((a, i) => {
        a.onBundle = (version, at) => {
          if (version <= held[i]! || !Number.isNaN(arrived[i]!)) return;
          arrived[i] = at;
          if (--waiting === 0) allArrived();
        };
      });
      return { id: request.id };
    }
    case "arrivals": {
      let timer: NodeJS.Timeout | undefined;
      if (waiting > 0) await new Promise<void>((resolve) => {
        allArrived = resolve;
        timer = setTimeout(resolve, Math.max(0, request.ms));
      });
      clearTimeout(timer);
      return { id: request.id, arrived, lastDone: verifications.lastDone, refused: agents.reduce((t, a) => t + a.refused, 0) };
    }
    case "stop": {
      for (const a of agents) a.stop();
      await Promise.allSettled(loops);
      closeConnections();
      return { id: request.id };
    }
  }
}
