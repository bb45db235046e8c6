// The LAN's IPv6 router: router advertisements of one prefix, sent by Debian's dnsmasq in the LAN
// namespace on its bridge, every few seconds, until stop(). By default SLAAC only (the A flag, no
// DHCPv6); `flags` picks another of dnsmasq's mixes, with its DHCPv6 server beside (DNS servers and
// search list from `dns`). Never a DNS server (--port=0), and nothing leaves the lab.

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DNSMASQ } from './dhcp-server';
import type { Lan } from './lan';
import { nsExecArgv } from './ns';
import { cleanEnv, isAlive, sleep, terminateSync } from './proc';

/**
 * dnsmasq's mixes of the advertisement's flags: `ra-only` (A), `ra-stateless` (A, O: DHCPv6 for
 * other configuration), `slaac` (A, M, O: DHCPv6 addresses beside SLAAC), `managed` (M, O, no A:
 * DHCPv6 addresses only). The DHCPv6 addresses are the prefix's ::1000 to ::1fff.
 */
export type AdvertFlags = 'ra-only' | 'ra-stateless' | 'slaac' | 'managed';

/** The DNS servers and search list the router gives (RDNSS/DNSSL in its advertisements, and by DHCPv6). */
export interface AdvertDns {
  server: string;
  search: string;
}

export class RouterAdverts {
  private child: ChildProcess | null = null;
  private readonly logFile: string;
  readonly leaseFile: string;

  constructor(
    private readonly lan: Lan,
    /** The advertised prefix's first address, e.g. 2001:db8:abc8:: (a /64). */
    readonly prefix: string,
    private readonly flags: AdvertFlags = 'ra-only',
    private readonly dns: AdvertDns | null = null,
    /** The MTU option of its advertisements (none by default: hosts keep their link's). */
    private readonly mtu: number | null = null,
  ) {
    const name = `radv-${prefix.replace(/:/g, '_')}-${flags}`;
    this.logFile = path.join(lan.dir, `${name}.log`);
    this.leaseFile = path.join(lan.dir, `${name}.leases`);
  }

  private range(): string {
    const addresses = `${this.prefix}1000,${this.prefix}1fff`;
    switch (this.flags) {
      case 'ra-only':
      case 'ra-stateless':
        return `--dhcp-range=${this.prefix},${this.flags},64,600`;
      case 'slaac':
        return `--dhcp-range=${addresses},slaac,64,600`;
      case 'managed':
        return `--dhcp-range=${addresses},64,600`;
    }
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
      this.range(),
      ...(this.dns === null
        ? []
        : [
            `--dhcp-option=option6:dns-server,[${this.dns.server}]`,
            `--dhcp-option=option6:domain-search,${this.dns.search}`,
          ]),
      ...(this.flags === 'ra-only' ? [] : ['--log-dhcp', `--dhcp-leasefile=${this.leaseFile}`]),
      // an advertisement every 4 s (the least dnsmasq sends), a router lifetime of 600 s
      `--ra-param=${this.lan.bridge},${this.mtu === null ? '' : `mtu:${this.mtu},`}4,600`,
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

  /** The addresses its DHCPv6 server holds a lease on now. */
  leased(): string[] {
    try {
      return fs
        .readFileSync(this.leaseFile, 'utf8')
        .split('\n')
        .filter((l) => /^\d+ /.test(l))
        .map((l) => l.split(' ')[2] ?? '');
    } catch {
      return [];
    }
  }

  log(): string {
    try {
      return fs.readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}
