/**
 * `npm run soak`: hours of a Docker host's use compressed into about 15
 * minutes on 2 cores (soak-run.ts says what runs), then every figure's slope
 * after the warm-up, which must be flat. Prints a table and writes
 * bench/results/soak.json and bench/results/soak.svg. Exits 1 when a figure
 * grows. SOAK_ROUNDS, SOAK_API_PER_ROUND, SOAK_DOCKER_PER_ROUND and
 * SOAK_RESIDENTS scale it (e.g. SOAK_ROUNDS=5 for a look in two minutes).
 */
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/repo';
import { judge } from './soak-metrics';
import { printSoakTable, writeSoakResults } from './soak-report';
import { SoakLab, type ApiKind } from './soak-run';

const number = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
const ROUNDS = number('SOAK_ROUNDS', 50);
const API_PER_ROUND = number('SOAK_API_PER_ROUND', 2_000);
const DOCKER_PER_ROUND = number('SOAK_DOCKER_PER_ROUND', 40);
const RESIDENTS = number('SOAK_RESIDENTS', 8);
const WARM_UP = 0.2;

/** Of each round's API cycles: most on Docker's IPAM, a quarter on lanplug's, a few DHCP (each waits for the ARP probe's 200 ms). */
function apiShare(total: number): Record<ApiKind, number> {
  const dhcp = Math.max(1, Math.round(total * 0.01));
  const lanplugIpam = Math.round(total * 0.25);
  return { dockerIpam: total - dhcp - lanplugIpam, lanplugIpam, dhcp };
}

async function main(): Promise<number> {
  const lab = await SoakLab.open({
    rounds: ROUNDS,
    apiPerRound: apiShare(API_PER_ROUND),
    workers: { dockerIpam: 3, lanplugIpam: 2, dhcp: 2 },
    dockerPerRound: DOCKER_PER_ROUND,
    residents: RESIDENTS,
    renewSeconds: 3,
    log: (line) => process.stderr.write(`soak: ${line}\n`),
  });
  try {
    const run = await lab.run();
    const cpu = cpus();
    const environment = {
      machine: `${cpu.length} × ${cpu[0]?.model.trim() ?? 'cpu'}`,
      kernel: release(),
      docker: run.environment.docker,
      node: process.version,
      date: new Date().toISOString().slice(0, 10),
    };
    const judgements = judge(run.samples, WARM_UP);
    process.stdout.write(printSoakTable(judgements, run, environment));
    const dir = join(repoRoot(), 'bench', 'results');
    writeSoakResults(dir, judgements, run, environment);
    process.stdout.write(`wrote ${join(dir, 'soak.json')} and ${join(dir, 'soak.svg')}\n`);
    return judgements.every((j) => j.flat) && run.residentsKept === RESIDENTS ? 0 : 1;
  } finally {
    lab.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
