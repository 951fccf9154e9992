import { spawn } from 'node:child_process';
import { once } from 'node:events';

/**
 * Runs Prometheus' `promtool` with `args`, `input` on stdin; resolves with its exit code and output. Fails with
 * the Debian package to install when promtool is missing.
 */
export async function promtool(args: readonly string[], input = ''): Promise<{ code: number; output: string }> {
  const child = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const [started] = await Promise.race([once(child, 'spawn'), once(child, 'error')]);
  if (started instanceof Error) throw new Error(`promtool is required (Debian package \`prometheus\`: apt-get install prometheus): ${started.message}`);
  child.stdin.end(input);
  const [code] = (await once(child, 'exit')) as [number];
  return { code, output };
}
