import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const ENTRY = fileURLToPath(new URL('./authgate-from-source.ts', import.meta.url));

export interface AuthgateProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly adminUrl: string;
  /** Every JSON log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  /** Lines of stdout that are not JSON (none, when log lines arrive whole). */
  readonly unparsed: string[];
  readonly stderr: string[];
  /** Resolves with the exit code (or the signal's name) once the process ended and its stdout was read. */
  readonly exited: Promise<number | string>;
  /** Waits until a log line satisfies `predicate` and returns it. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGKILL if still running (test clean-up). */
  kill(): Promise<void>;
}

/** `authgate start -c FILE` in a child process; resolves once it logged that it listens. */
export async function startAuthgate(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<AuthgateProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, 'start', '-c', configFile], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const unparsed: string[] = [];
  const stderr: string[] = [];
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        unparsed.push(line);
      }
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  // Exited once the process has and its stdout is read to the end: the last log lines are in `logs` by then.
  const exited = Promise.all([once(child, 'exit'), once(child.stdout as NodeJS.ReadableStream, 'close')]).then(
    ([[code, signal]]) => (code ?? signal) as number | string,
  );

  const waitForLog: AuthgateProcess['waitForLog'] = async (predicate, timeoutMs = 15_000) => {
    await expect
      .poll(() => logs.some(predicate) || child.exitCode !== null, { timeout: timeoutMs, interval: 20 })
      .toBe(true);
    const line = logs.find(predicate);
    if (!line) throw new Error(`authgate exited (${String(child.exitCode)}): ${stderr.join('')}`);
    return line;
  };
  const listening = await waitForLog((line) => line.msg === 'authgate listening');
  return {
    child,
    url: String(listening.url),
    adminUrl: String(listening.admin),
    logs,
    unparsed,
    stderr,
    exited,
    waitForLog,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** GET `path` on a fresh connection; resolves with the status once the body has been read. */
export function get(base: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}
