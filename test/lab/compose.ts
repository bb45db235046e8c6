// Docker Compose v2 for the labs: sid's docker-compose (2.40, built into the sid root of
// sid-root.ts with the Docker 28 lane's engine) as a plugin of the lab's own docker client, so a
// test runs `docker compose` as users do, against the lab's dockerd 20.10 or 28.5. The plugin
// is a Go binary needing only libc, like sid's docker client; the client finds it through
// `cliPluginsExtraDirs` in a client config dir of its own (the Docker host's stays as it is).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DockerHost } from './docker-host';
import { ensureSidRoot } from './sid-root';

/** Runs `docker compose -p PROJECT --project-directory DIR ARGS…` on `host`; returns stdout, throws on failure. */
export function composeOk(host: DockerHost, dir: string, project: string, args: readonly string[]): string {
  const config = path.join(host.dir, 'compose-client');
  if (!fs.existsSync(path.join(config, 'config.json'))) {
    const plugins = path.join(ensureSidRoot(), 'usr/libexec/docker/cli-plugins');
    fs.mkdirSync(config, { recursive: true });
    fs.writeFileSync(path.join(config, 'config.json'), JSON.stringify({ cliPluginsExtraDirs: [plugins] }));
  }
  return host.dockerOk(['compose', '-p', project, '--project-directory', dir, ...args], {
    env: { DOCKER_CONFIG: config },
  });
}
