/** Child processes for the bench: spawning (optionally pinned to a core), CPU time and RSS from /proc. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export function commandExists(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const hasTaskset = commandExists('taskset');
/** Clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

export interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The first stdout line parsed as JSON (how the bench servers announce their port). */
  readonly announcement: Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Spawns `command args`, under `taskset -c cpu` when a core is given (taskset execs, so the pid is the command's). */
export function spawnPinned(
  cpu: number | undefined,
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; announces?: boolean } = {},
): Spawned {
  const argv = cpu !== undefined ? ['-c', String(cpu), command, ...args] : [...args];
  const child = spawn(cpu !== undefined ? 'taskset' : command, argv, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    // The gateway's access log goes to /dev/null: it is still serialized and written, as in production.
    stdio: ['ignore', options.announces ? 'pipe' : 'ignore', 'inherit'],
  });
  if (child.pid === undefined) throw new Error(`cannot start ${command}`);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const announcement = options.announces
    ? new Promise<Record<string, unknown>>((resolve, reject) => {
        const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
        lines.once('line', (line) => resolve(JSON.parse(line) as Record<string, unknown>));
        child.once('exit', (code) => reject(new Error(`${command} ${args.join(' ')} exited with ${code} before announcing`)));
      })
    : Promise.resolve({});
  return {
    child,
    pid: child.pid,
    announcement,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const forced = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(forced);
    },
  };
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields are counted after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** pid and every live descendant (cluster workers are children of the primary). */
function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const fields = statFields(pid);
    const ppid = fields ? Number(fields[1]) : NaN;
    if (!Number.isInteger(ppid)) continue;
    const siblings = parents.get(ppid);
    if (siblings) siblings.push(pid);
    else parents.set(ppid, [pid]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(parents.get(tree[i] as number) ?? []));
  return tree;
}

/** User + system CPU seconds used so far by each of a process and its live descendants. */
export function cpuSecondsByProcess(root: number): Map<number, number> {
  const seconds = new Map<number, number>();
  for (const pid of processTree(root)) {
    const fields = statFields(pid);
    // After the ')': state(0) ppid(1) … utime(11) stime(12), i.e. fields 14 and 15 of proc(5).
    if (fields) seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS);
  }
  return seconds;
}

/** User + system CPU seconds used so far by a process and its live descendants. */
export function cpuSeconds(root: number): number {
  let total = 0;
  for (const seconds of cpuSecondsByProcess(root).values()) total += seconds;
  return total;
}

/** Resident set size in bytes of a process and its live descendants. */
export function rssBytes(root: number): number {
  let total = 0;
  for (const pid of processTree(root)) {
    try {
      const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) total += Number(match[1]) * 1024;
    } catch {
      // The process exited between listing and reading.
    }
  }
  return total;
}

/** Busy (non-idle) CPU seconds of one core so far, whoever used it: subtracting a pinned process's own time leaves the others'. */
export function coreBusySeconds(cpu: number): number {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith(`cpu${cpu} `));
  if (line === undefined) return 0;
  const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / CLOCK_TICKS;
}
