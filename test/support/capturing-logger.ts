/** A Logger that keeps every line it is given, for tests that assert what was logged. */
import type { Fields, Logger } from '../../src/log';

export interface Line {
  level: string;
  msg: string;
  fields: Fields;
}

export function capturingLogger(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (msg: string, fields: Fields = {}): void => {
      lines.push({ level, msg, fields });
    };
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}
