/**
 * Which Docker engine lanplug serves, and what that engine gives a remote
 * driver: learned from dockerd's own API in the background (never from a
 * plugin request: dockerd calls plugins before it serves its API at boot)
 * and remembered in the state directory, so that a daemon that restarts
 * knows it before dockerd answers. What changed, by version (moby's release
 * notes; the Docker 28 lane proves what 28.5 does):
 *
 * - 27.0: per-endpoint sysctls (`--driver-opt com.docker.network.endpoint.sysctls=…`)
 *   are applied to lanplug's interface in the container;
 * - 28.0: Docker announces every interface itself (3 gratuitous ARP / unsolicited
 *   NA, `com.docker.network.advertise_addr_nmsgs`), IPv6-only networks
 *   (`--ipv4=false`), `gw-priority`, and it asks GwAllocCheck;
 * - 29.0: macvlan and ipvlan networks get no gateway unless `--gateway` is
 *   given, and the container's name reaches the IPAM driver (lanplug-dhcp's
 *   DHCP hostname);
 * - 29.3: `docker network connect --mac-address`.
 */
import type { Store } from '../../state/store';
import type { DockerEngine } from './engine';

const VERSION_KEY = 'docker_version';

/** `28.5.2`, `20.10.24+dfsg1`, `29.0.0-rc.1` -> [major, minor]; null for anything else. */
export function parseEngineVersion(text: string): { major: number; minor: number } | null {
  const match = /^(\d+)\.(\d+)/.exec(text);
  return match === null ? null : { major: Number(match[1]), minor: Number(match[2]) };
}

/** What lanplug's networks get from an engine of `version`, in a few words each (for `lanplug doctor`). */
export function engineFeatures(version: string): string[] {
  const v = parseEngineVersion(version);
  if (v === null) return [];
  const at = (major: number, minor = 0): boolean => v.major > major || (v.major === major && v.minor >= minor);
  return [
    ...(at(27) ? ['endpoint sysctls applied'] : []),
    ...(at(28) ? ["Docker's own announcements (3 ARP/NA) beside lanplug's", 'IPv6-only networks', 'gw-priority'] : []),
    ...(at(29) ? ['no gateway without --gateway', "the container's name as DHCP hostname (lanplug-dhcp)"] : []),
    ...(at(29, 3) ? ['network connect --mac-address'] : []),
  ];
}

/** The engine version as last learned, kept in the state directory's meta table. */
export class EngineVersion {
  constructor(private readonly store: Pick<Store, 'getMeta' | 'setMeta'>) {}

  /** The last version learned (`28.5.2`), or null before the first answer of any dockerd. */
  get known(): string | null {
    return this.store.getMeta(VERSION_KEY);
  }

  learned(version: string): void {
    if (parseEngineVersion(version) !== null && this.known !== version) this.store.setMeta(VERSION_KEY, version);
  }

  /**
   * Asks `engine` in the background, never from a request: dockerd calls plugins before it serves
   * its API at boot. Not up yet: the periodic pass learns it (housekeeping.ts).
   */
  learnSoon(engine: Pick<DockerEngine, 'info'>): void {
    engine.info().then(
      (info) => {
        // learned() writes to the store: a failure there is no reason to end the daemon (learned next pass).
        try {
          if (info.version !== null) this.learned(info.version);
        } catch {
          // the periodic pass learns it again
        }
      },
      () => undefined,
    );
  }

  /**
   * GwAllocCheck's answer: whether Docker should reserve no default gateway for a network made with
   * `options`. As the engine's own macvlan and ipvlan do: on 29 and later never without `--gateway`;
   * on 28 only for an `--internal` network. An engine not known yet gets 28's answer (a gateway
   * Docker reserves, never one a user loses).
   */
  skipsGateway(internal: boolean): boolean {
    const v = this.known === null ? null : parseEngineVersion(this.known);
    return (v !== null && v.major >= 29) || internal;
  }
}
