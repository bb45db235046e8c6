/** HTTP over a unix socket, for lanplug's own clients (dockerd's API, the control socket, doctor's socket check). */
import { request } from 'node:http';
import type { Readable } from 'node:stream';

/** The peer took the connection (or the request) and did not answer within the timeout. */
export class NoAnswerError extends Error {}

/** The most an answer may carry: a peer sending without end must not take the client's memory. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

export interface HttpAnswer {
  status: number;
  body: string;
}

export function unixHttp(
  socketPath: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: string,
  timeoutMs = 5_000,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers =
      body === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    const req = request({ socketPath, path, method, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES)
          req.destroy(new Error(`${socketPath} answered more than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    const noAnswer = (): NoAnswerError => new NoAnswerError(`${socketPath} did not answer within ${timeoutMs} ms`);
    // `timeout` is the socket's idle time: a peer sending a byte now and then would never meet it. The
    // whole answer gets twice as long.
    const deadline = setTimeout(() => req.destroy(noAnswer()), 2 * timeoutMs);
    req.on('close', () => clearTimeout(deadline));
    req.on('timeout', () => req.destroy(noAnswer()));
    req.on('error', reject);
    req.end(body);
  });
}

/** A request whose body is a stream (sent chunked), such as a tar archive for dockerd. */
export function unixHttpStream(
  socketPath: string,
  path: string,
  contentType: string,
  body: Readable,
  timeoutMs: number,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, path, method: 'POST', headers: { 'Content-Type': contentType }, timeout: timeoutMs },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new NoAnswerError(`${socketPath} did not answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    body.on('error', (err) => req.destroy(err));
    body.pipe(req);
  });
}
