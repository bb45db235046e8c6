/** Talking to a plugin socket the way dockerd does, for the tests that play dockerd. */
import { type Agent, request } from 'node:http';

/** One request to a plugin socket as dockerd sends it (POST, the plugin media type); the answer must be JSON. */
export function post(
  socketPath: string,
  path: string,
  data: string,
  options: { agent?: Agent; method?: string } = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath,
        path,
        method: options.method ?? 'POST',
        agent: options.agent,
        headers: { 'Content-Length': Buffer.byteLength(data), Accept: 'application/vnd.docker.plugins.v1.2+json' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new Error(`not JSON (status ${res.statusCode ?? 0}): ${text.slice(0, 200)}`));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}
