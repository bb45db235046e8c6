/** What every area of `lanplug doctor` reports with: one line per check, and the options it was run with. */

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  check: string;
  status: CheckStatus;
  detail: string;
  /** The command (or step) that fixes it, when it is not fine. */
  fix?: string;
}

export interface DoctorOptions {
  stateDir: string;
  pluginDir: string;
  dockerSocket: string;
  /** The daemon's CNI socket (doctor/cni-socket.ts); null: it runs with `--cni-socket off`. */
  cniSocket: string | null;
}

export type Add = (check: string, status: CheckStatus, detail: string, fix?: string) => void;
