import { mkdtemp, open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { issuerYaml, startIdp, type Idp } from '../helpers/idp.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/upstream.js';
import { get, startAuthgate, type AuthgateProcess } from './process.js';

/**
 * A config rewritten in place, in two writes with a pause between them (a slow copy, a shell redirect, an editor
 * that writes in place): the first write alone is a valid config that opens the admin route to any token,
 * because the route's `require` has not been written yet. A real `authgate start` watching the file must never
 * serve that prefix, and must load the whole file once it stops changing.
 */

/** The writer's pause between its two writes. */
const PAUSE_MS = 600;
const RELOAD_DEADLINE_MS = 15_000;

let idp: Idp;
let upstream: RecordingUpstream;
let running: AuthgateProcess | undefined;

beforeAll(async () => {
  [idp, upstream] = await Promise.all([startIdp({ keys: ['rsa'] }), startRecordingUpstream()]);
});
afterEach(async () => {
  await running?.kill();
  running = undefined;
});
afterAll(async () => {
  await Promise.all([upstream?.close(), idp?.close()]);
});

/** The admin route comes last, so cutting the file before its `require` leaves a config that loads. */
function configYaml(publicRoute: string): string {
  return `version: 1
server: { listen: 127.0.0.1:0, shutdown_grace: 1s }
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: false }
issuers:
${issuerYaml(idp)}
upstreams:
  api: { url: ${upstream.url}, timeout: 5s }
routes:
  - name: ${publicRoute}
    match: { path: /${publicRoute} }
    upstream: api
    auth: none
  - name: admin
    match: { path: /admin/** }
    upstream: api
    require:
      roles: [admin]
`;
}

describe('hot reload of a file rewritten in place', () => {
  it('never serves the valid prefix written first, and loads the whole file once it has stopped changing', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'authgate-in-place-')), 'gateway.yaml');
    await writeFile(file, configYaml('one'));
    running = await startAuthgate(file);
    const gw = running;
    const user = { authorization: `Bearer ${idp.sign({ roles: ['user'] })}`, 'x-probe': 'user' };
    const anonymous = { 'x-probe': 'anonymous' };
    expect(await get(gw.url, '/admin/panel', user)).toBe(403);
    expect(await get(gw.url, '/admin/panel', { authorization: `Bearer ${idp.sign({ roles: ['admin'] })}` })).toBe(200);

    const next = configYaml('two');
    const cut = next.indexOf('    require:');
    const handle = await open(file, 'w');
    const answers: number[] = [];
    const probe = async (): Promise<void> => {
      answers.push(await get(gw.url, '/admin/panel', user), await get(gw.url, '/admin/panel', anonymous));
    };
    try {
      await handle.write(next.slice(0, cut));
      await handle.sync();
      // The writer's pause: the admin route is probed all along.
      const resumeAt = performance.now() + PAUSE_MS;
      while (performance.now() < resumeAt) await probe();
      await handle.write(next.slice(cut));
    } finally {
      await handle.close();
    }
    // Probed on until the whole file is in force, within a bounded wait.
    const giveUpAt = performance.now() + RELOAD_DEADLINE_MS;
    while (!gw.logs.some((line) => line.msg === 'configuration reloaded')) {
      expect(performance.now()).toBeLessThan(giveUpAt);
      await probe();
    }

    expect(answers.length).toBeGreaterThan(10);
    expect(new Set(answers)).toEqual(new Set([403, 401]));
    expect(upstream.seen.filter((seen) => seen.headers['x-probe'] !== undefined)).toEqual([]);
    expect(gw.logs.filter((line) => line.msg === 'configuration reloaded')).toHaveLength(1);
    expect(gw.logs.filter((line) => line.msg === 'config reload refused; keeping the running config')).toEqual([]);
    expect(await get(gw.url, '/two')).toBe(200);
    expect(await get(gw.url, '/one')).toBe(404);
    expect(await get(gw.url, '/admin/panel', user)).toBe(403);
  });
});
