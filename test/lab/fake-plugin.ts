// A stand-in for `lanplug daemon`, used only to test the lab itself (plugin discovery through
// DockerHost.pluginDir, startLanplug's readiness and stderr capture, stop()).
// Usage: node fake-plugin.js daemon --state-dir X --plugin-dir Y
// Serves a do-nothing libnetwork remote network driver named lanplug-macvlan.

import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) {
    process.stderr.write(`fake-plugin: missing ${name}\n`);
    process.exit(2);
  }
  return v;
}

const pluginDir = arg('--plugin-dir');
const sock = path.join(pluginDir, 'lanplug-macvlan.sock');
fs.rmSync(sock, { force: true });

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('end', () => {
    process.stderr.write(`fake-plugin: ${req.url ?? '?'} ${body}\n`);
    let reply: unknown = {};
    if (req.url === '/Plugin.Activate') reply = { Implements: ['NetworkDriver'] };
    else if (req.url === '/NetworkDriver.GetCapabilities') reply = { Scope: 'local', ConnectivityScope: 'local' };
    res.writeHead(200, { 'Content-Type': 'application/vnd.docker.plugins.v1+json' });
    res.end(JSON.stringify(reply));
  });
});

server.listen(sock, () => process.stderr.write(`fake-plugin: listening on ${sock}\n`));
process.on('SIGTERM', () => {
  process.stderr.write('fake-plugin: SIGTERM\n');
  server.close();
  fs.rmSync(sock, { force: true });
  process.exit(0);
});
