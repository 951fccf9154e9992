import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `docker build` is not available where the tests run, so this replays the Dockerfile itself: each stage gets a
 * scratch root directory, COPY copies from the repository (or from the earlier stage), RUN runs its shell command
 * there, ENV is kept. Then the image's ENTRYPOINT runs `check` and `start` from the runtime stage's root, and the
 * HEALTHCHECK command is run against it. What the replay cannot do (base image, USER) is checked on the text.
 *
 * Two adjustments, both for the shared test machine: npm works from its local cache when it can
 * (`prefer_offline`), and `npm cache clean --force` is skipped (it would empty the developer's npm cache).
 */

const run = promisify(execFile);
const REPO = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

interface Stage {
  readonly name: string | undefined;
  readonly root: string;
  workdir: string;
  readonly env: Record<string, string>;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): Instruction[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const space = line.indexOf(' ');
      return { keyword: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() };
    });
}

/** `KEY=VALUE KEY2=VALUE2` (values without spaces, as this Dockerfile writes them). */
function parseEnv(args: string): Record<string, string> {
  return Object.fromEntries(args.split(/\s+/).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

let scratch: string;
let stages: Stage[];
let runtime: Stage;

/** A path inside a stage's root: absolute image paths live under the stage's scratch directory. */
const inStage = (stage: Stage, path: string): string => join(stage.root, posix.isAbsolute(path) ? path : posix.join(stage.workdir, path));

/** The runtime environment: the image's ENV, with absolute image paths mapped into the stage root. */
function imageEnv(stage: Stage, overrides: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [key, value] of Object.entries(stage.env)) env[key] = value.startsWith('/') ? inStage(stage, value) : value;
  return { ...env, ...overrides };
}

async function replay(stage: Stage): Promise<void> {
  for (const { keyword, args } of stage.instructions) {
    switch (keyword) {
      case 'WORKDIR':
        stage.workdir = args;
        await mkdir(inStage(stage, '.'), { recursive: true });
        break;
      case 'ENV':
        Object.assign(stage.env, parseEnv(args));
        break;
      case 'COPY': {
        const words = args.split(/\s+/);
        const from = words[0]?.startsWith('--from=') ? stages.find((s) => s.name === words.shift()?.slice('--from='.length)) : undefined;
        const dest = words.pop() as string;
        for (const source of words) {
          const origin = from ? inStage(from, source) : join(REPO, source);
          const target = dest.endsWith('/') ? join(inStage(stage, dest), posix.basename(source)) : inStage(stage, dest);
          await mkdir(dirname(target), { recursive: true });
          await cp(origin, target, { recursive: true });
        }
        break;
      }
      case 'RUN': {
        const command = args
          .split('&&')
          .map((part) => part.trim())
          .filter((part) => !part.startsWith('npm cache clean'))
          .join(' && ');
        await run('sh', ['-c', command], {
          cwd: inStage(stage, '.'),
          env: { ...process.env, ...stage.env, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
          maxBuffer: 16 * 1024 * 1024,
        });
        break;
      }
      default:
        break; // FROM, USER, EXPOSE, STOPSIGNAL, HEALTHCHECK, ENTRYPOINT, CMD: checked or used below
    }
  }
}

const lastArgs = (stage: Stage, keyword: string): string | undefined => stage.instructions.filter((i) => i.keyword === keyword).at(-1)?.args;

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'authgate-image-'));
  stages = [];
  for (const instruction of parseDockerfile(await readFile(join(REPO, 'Dockerfile'), 'utf8'))) {
    if (instruction.keyword === 'FROM') {
      const name = /\bAS\s+(\S+)/i.exec(instruction.args)?.[1];
      stages.push({ name, root: join(scratch, `stage-${stages.length}`), workdir: '/', env: {}, instructions: [instruction] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  runtime = stages.at(-1) as Stage;
  for (const stage of stages) await replay(stage);
}, 180_000);
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('Dockerfile', () => {
  it('is multi-stage on a supported Node LTS, runs as a numeric unprivileged user, starts `authgate start`, and checks /healthz', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    // Numeric uid:gid: Kubernetes' runAsNonRoot refuses to start an image whose USER is a name.
    const [uid, gid] = (lastArgs(runtime, 'USER') ?? '').split(':');
    expect(uid).toMatch(/^[1-9]\d*$/);
    expect(gid).toMatch(/^[1-9]\d*$/);
    // A Node.js LTS line still in support, for every stage.
    for (const stage of stages) expect(stage.instructions[0]?.args).toMatch(/^node:(22|24)-(bookworm-slim|alpine)\b/);
    expect(JSON.parse(lastArgs(runtime, 'ENTRYPOINT') ?? '[]')).toEqual(['node', 'bin/authgate.js']);
    expect(JSON.parse(lastArgs(runtime, 'CMD') ?? '[]')).toEqual(['start']);
    expect(lastArgs(runtime, 'HEALTHCHECK')).toContain('/healthz');
  });

  it('ships production dependencies and compiled output only', () => {
    const root = inStage(runtime, '.');
    expect(existsSync(join(root, 'dist/cli/main.js'))).toBe(true);
    expect(existsSync(join(root, 'node_modules/prom-client'))).toBe(true);
    for (const absent of ['src', 'test', 'node_modules/typescript', 'node_modules/vitest', 'node_modules/tsx']) {
      expect(existsSync(join(root, absent)), absent).toBe(false);
    }
  });

  it('validates the bundled config with `check`', async () => {
    const { stdout } = await run('node', ['bin/authgate.js', 'check'], { cwd: inStage(runtime, '.'), env: imageEnv(runtime, {}) });
    expect(stdout).toContain('ok');
  });

  it('starts, passes its own HEALTHCHECK, and exits 0 on SIGTERM', async () => {
    const adminPort = await freePort();
    const child = spawn('node', ['bin/authgate.js', ...(JSON.parse(lastArgs(runtime, 'CMD') ?? '[]') as string[])], {
      cwd: inStage(runtime, '.'),
      // Loopback and a free admin port instead of the image's 0.0.0.0:8080/9090: this is a shared machine.
      env: imageEnv(runtime, { AUTHGATE_LISTEN: '127.0.0.1:0', AUTHGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}` }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = once(child, 'exit');
    try {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      await expect.poll(() => output.includes('authgate listening') || child.exitCode !== null, { timeout: 15_000 }).toBe(true);
      expect(child.exitCode).toBeNull();

      // The check asks the port the image's environment names, as the container's would.
      const healthcheck = (lastArgs(runtime, 'HEALTHCHECK') ?? '').replace(/^.*?\bCMD\s+/, '');
      await expect(run('sh', ['-c', healthcheck], { env: { ...process.env, AUTHGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}` } })).resolves.toBeDefined();

      child.kill('SIGTERM');
      expect((await exited)[0]).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
