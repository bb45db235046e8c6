/**
 * What Prometheus's scrapes cost the daemon's attaches: attach and detach
 * cycles over the driver API with nothing scraping, then the same with
 * GET /metrics on the control socket every SCRAPE_EVERY_MS beside them (ten
 * times as often as a usual 1 s scrape interval at its shortest), and the
 * page's size and the time to answer it. The two in alternating blocks
 * (BLOCKS of each), so that the machine's other load falls on both.
 */
import { unixHttp } from '../../src/api/unix-http';
import type { DriverClient } from './driver-api';
import { sinceMs, sleep, type Results } from './stats';

const SCRAPE_EVERY_MS = 100;

function endpointId(prefix: string, i: number): string {
  return `${prefix}${i.toString(16).padStart(10, '0')}`.padEnd(64, '0');
}

async function cycles(
  client: DriverClient,
  prefix: string,
  n: number,
): Promise<{ attach: number[]; detach: number[] }> {
  const attach: number[] = [];
  const detach: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = endpointId(prefix, i);
    let start = process.hrtime.bigint();
    await client.attach(id, `172.16.88.${(i % 250) + 2}/16`);
    attach.push(sinceMs(start));
    start = process.hrtime.bigint();
    await client.detach(id);
    detach.push(sinceMs(start));
  }
  return { attach, detach };
}

/** Quiet and scraped blocks in turn: a load that comes and goes on a shared machine falls on both alike. */
const BLOCKS = 10;

export async function scrapeCost(
  results: Results,
  client: DriverClient,
  controlSocket: string,
  options: { cycles: number },
): Promise<void> {
  const quiet = { attach: [] as number[], detach: [] as number[] };
  const scraped = { attach: [] as number[], detach: [] as number[] };
  const scrapes: number[] = [];
  let bytes = 0;
  const perBlock = Math.max(1, Math.round(options.cycles / BLOCKS));
  for (let block = 0; block < BLOCKS; block++) {
    const q = await cycles(client, `e${block}`, perBlock);
    quiet.attach.push(...q.attach);
    quiet.detach.push(...q.detach);
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        const start = process.hrtime.bigint();
        const page = await unixHttp(controlSocket, 'GET', '/metrics');
        scrapes.push(sinceMs(start));
        if (page.status !== 200) throw new Error(`bench: GET /metrics answered ${page.status}`);
        bytes = Buffer.byteLength(page.body);
        await sleep(SCRAPE_EVERY_MS);
      }
    })();
    const s = await cycles(client, `f${block}`, perBlock).finally(() => (scraping = false));
    await scraper;
    scraped.attach.push(...s.attach);
    scraped.detach.push(...s.detach);
  }
  const section = 'metrics scrape cost';
  const attachQuiet = results.add(section, 'attach (CreateEndpoint + Join), no scrape', quiet.attach);
  const attachScraped = results.add(
    section,
    `attach (CreateEndpoint + Join), GET /metrics every ${SCRAPE_EVERY_MS} ms`,
    scraped.attach,
  );
  results.add(section, 'detach (Leave + DeleteEndpoint), no scrape', quiet.detach);
  results.add(section, `detach (Leave + DeleteEndpoint), GET /metrics every ${SCRAPE_EVERY_MS} ms`, scraped.detach);
  results.add(section, 'GET /metrics on the control socket (answer read)', scrapes);
  results.figure('metrics page size', bytes / 1000, 'kB');
  results.judge(
    `attach p50 with a scrape every ${SCRAPE_EVERY_MS} ms ≤ 1.25× without`,
    `${attachScraped.p50.toFixed(3)} ms against ${attachQuiet.p50.toFixed(3)} ms (p99 ${attachScraped.p99.toFixed(2)} against ${attachQuiet.p99.toFixed(2)} ms), ${scrapes.length} scrapes`,
    attachScraped.p50 <= attachQuiet.p50 * 1.25,
  );
}
