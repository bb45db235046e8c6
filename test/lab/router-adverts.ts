// The LAN's IPv6 router: router advertisements of one prefix (SLAAC, no DHCPv6), sent by Debian's
// dnsmasq in the LAN namespace on its bridge, every few seconds, until stop(). Nothing else of
// dnsmasq runs (no DNS, no DHCP), and nothing leaves the lab.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DNSMASQ } from './dhcp-server';
import type { Lan } from './lan';
import { nsExecArgv } from './ns';
import { cleanEnv, isAlive, sleep, terminateSync } from './proc';

export class RouterAdverts {
  private child: ChildProcess | null = null;
  private readonly logFile: string;

  constructor(
    private readonly lan: Lan,
    /** The advertised prefix's first address, e.g. 2001:db8:abc8:: (a /64). */
    readonly prefix: string,
  ) {
    this.logFile = path.join(lan.dir, `radv-${prefix.replace(/:/g, '_')}.log`);
  }

  async start(): Promise<void> {
    const argv = [
      DNSMASQ,
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--user=root',
      `--interface=${this.lan.bridge}`,
      '--bind-interfaces',
      '--enable-ra',
      `--dhcp-range=${this.prefix},ra-only,64,600`,
      // an advertisement every 4 s (the least dnsmasq sends), a router lifetime of 600 s
      `--ra-param=${this.lan.bridge},4,600`,
      `--log-facility=${this.logFile}`,
    ];
    const [cmd, ...args] = nsExecArgv(this.lan.ns, argv);
    this.child = spawn(cmd as string, args, { stdio: 'ignore', env: cleanEnv() });
    this.child.on('error', () => undefined);
    this.child.unref();
    const deadline = Date.now() + 10_000;
    while (!this.log().includes('router advertisement')) {
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`lab: dnsmasq (router advertisements) did not start: ${this.log().slice(-2000)}`);
      await sleep(50);
    }
  }

  stop(): void {
    const pid = this.child?.pid;
    if (pid !== undefined && isAlive(pid)) terminateSync(pid, 5_000);
    this.child = null;
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}
