// A real etcd cluster for the shared-pool tests: three members of Debian's etcd 3.4 (etcd-server),
// on one address (loopback, or a lab LAN host's) with a port pair each, data on the lab's temp dir.
// Members can be paused (SIGSTOP: a member that hangs, as a partitioned or overloaded one does),
// killed and started again on their data. stop() ends them all; the data dir goes with the caller's.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { request } from 'node:http';
import * as path from 'node:path';
import { nsExecArgv } from './ns';
import { BUSYBOX } from './image';
import { cleanEnv, isAlive, run, sleep, tail, terminateSync } from './proc';

export const ETCD = '/usr/bin/etcd';
const MEMBERS = 3;
const READY_TIMEOUT_MS = 30_000;

export interface EtcdClusterOptions {
  /** Where the members keep their data and logs (a lab temp dir). */
  dir: string;
  /** The address every member listens on. */
  address: string;
  /** Client ports are base+1..base+3, peer ports base+11..base+13. */
  basePort: number;
  /** A network namespace to run in (a lab LAN host's); none: the current one. */
  ns?: string;
}

export class EtcdCluster {
  private readonly children: (ChildProcess | null)[] = new Array<ChildProcess | null>(MEMBERS).fill(null);

  constructor(private readonly options: EtcdClusterOptions) {}

  /** `etcd://a:p1,a:p2,a:p3`, as `lanplug daemon --store` takes it. */
  get storeUrl(): string {
    return `etcd://${this.clientUrls.map((u) => u.slice('http://'.length)).join(',')}`;
  }

  get clientUrls(): string[] {
    return [1, 2, 3].map((i) => `http://${this.options.address}:${this.options.basePort + i}`);
  }

  private peerUrl(i: number): string {
    return `http://${this.options.address}:${this.options.basePort + 10 + i}`;
  }

  async start(): Promise<void> {
    for (let i = 0; i < MEMBERS; i++) this.spawnMember(i);
    await this.waitHealthy([0, 1, 2]);
  }

  /** SIGSTOP: the member holds its connections and answers nothing. */
  pause(index: number): void {
    const pid = this.children[index]?.pid;
    if (pid !== undefined) process.kill(pid, 'SIGSTOP');
  }

  resume(index: number): void {
    const pid = this.children[index]?.pid;
    if (pid !== undefined) process.kill(pid, 'SIGCONT');
  }

  /**
   * Waits until these members answer /health (a leader, and a quorum read made). After a pause of a
   * majority, etcd first elects a leader again: seconds under load, during which every read fails.
   */
  async untilHealthy(indexes: readonly number[]): Promise<void> {
    await this.waitHealthy(indexes);
  }

  kill(index: number): void {
    const child = this.children[index];
    if (child?.pid !== undefined && isAlive(child.pid)) {
      process.kill(child.pid, 'SIGCONT');
      terminateSync(child.pid, 5_000);
    }
    this.children[index] = null;
  }

  /** Starts a killed member again on its data (it rejoins the cluster). */
  async restart(index: number): Promise<void> {
    this.spawnMember(index);
    await this.waitHealthy([index]);
  }

  stop(): void {
    for (let i = 0; i < MEMBERS; i++) this.kill(i);
  }

  log(index: number): string {
    try {
      return fs.readFileSync(path.join(this.options.dir, `etcd-m${index + 1}.log`), 'utf8');
    } catch {
      return '';
    }
  }

  private spawnMember(index: number): void {
    const name = `m${index + 1}`;
    const client = this.clientUrls[index] ?? '';
    const argv = [
      ETCD,
      `--name=${name}`,
      `--data-dir=${path.join(this.options.dir, `etcd-${name}`)}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${this.peerUrl(index + 1)}`,
      `--initial-advertise-peer-urls=${this.peerUrl(index + 1)}`,
      `--initial-cluster=${[1, 2, 3].map((i) => `m${i}=${this.peerUrl(i)}`).join(',')}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=lp-${path.basename(this.options.dir)}`,
      '--logger=zap',
      '--log-outputs=stderr',
    ];
    const full = this.options.ns === undefined ? argv : nsExecArgv(this.options.ns, argv);
    const logFd = fs.openSync(path.join(this.options.dir, `etcd-${name}.log`), 'a');
    const child = spawn(full[0] ?? ETCD, full.slice(1), { stdio: ['ignore', logFd, logFd], env: cleanEnv() });
    fs.closeSync(logFd);
    child.on('error', () => undefined);
    child.unref();
    this.children[index] = child;
  }

  private async healthy(url: string): Promise<boolean> {
    return this.options.ns === undefined ? healthy(url) : healthyIn(this.options.ns, url);
  }

  private async waitHealthy(indexes: readonly number[]): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (const index of indexes) {
      const url = this.clientUrls[index] ?? '';
      while (!(await this.healthy(url))) {
        const child = this.children[index];
        if (child === null || child === undefined || child.exitCode !== null || Date.now() > deadline)
          throw new Error(`lab: etcd member ${index + 1} is not healthy: ${tail(this.log(index), 20)}`);
        await sleep(50);
      }
    }
  }
}

/** The member's /health, asked from where the members run (a lab namespace: busybox's wget there; its -T crashes the static build). */
function healthyIn(ns: string, url: string): boolean {
  const r = run(nsExecArgv(ns, [BUSYBOX, 'wget', '-q', '-O', '-', `${url}/health`]), { timeoutMs: 2_000 });
  return r.status === 0 && r.stdout.includes('"health":"true"');
}

function healthy(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${url}/health`, { timeout: 1_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body.includes('"health":"true"')));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

export async function startEtcdCluster(options: EtcdClusterOptions): Promise<EtcdCluster> {
  fs.mkdirSync(options.dir, { recursive: true });
  const cluster = new EtcdCluster(options);
  try {
    await cluster.start();
  } catch (err) {
    cluster.stop();
    throw err;
  }
  return cluster;
}
