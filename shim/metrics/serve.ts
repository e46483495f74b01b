// `hull metrics --listen`: GET /metrics over HTTP (node:http) until SIGTERM or SIGINT, a new scrape for each request.
// A scrape that throws answers 500 with its one line (and logs it); the server goes on.
import http from 'node:http';
import type { Logger } from 'pino';
import { HullError, oneLine } from '../errors.js';
import { EXPOSITION_CONTENT_TYPE } from './exposition.js';
import type { ListenAddress } from './listen.js';

/** Starts serving; resolves once listening (with the bound address), rejects with one line when it cannot listen. */
export function listen(address: ListenAddress, scrape: () => Promise<string>, logger: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain', Allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    scrape().then(
      (body) => res.writeHead(200, { 'Content-Type': EXPOSITION_CONTENT_TYPE }).end(req.method === 'HEAD' ? undefined : body),
      (err: unknown) => {
        logger.error({ err: oneLine(err) }, 'scrape failed');
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`scrape failed: ${oneLine(err)}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : oneLine(err);
      reject(new HullError('unavailable', `cannot listen on ${address.host}:${address.port}: ${why}`, { cause: err }));
    });
    server.listen(address.port, address.host, () => resolve(server));
  });
}

/** Serves until SIGTERM or SIGINT, then closes the server; resolves with exit code 0. */
export async function serveUntilSignal(address: ListenAddress, scrape: () => Promise<string>, logger: Logger): Promise<number> {
  const server = await listen(address, scrape, logger);
  logger.info({ address: server.address() }, 'serving /metrics');
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return 0;
}
