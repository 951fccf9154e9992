import { mkdir, mkdtemp, rename, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startIdp, type Idp } from '../helpers/idp.js';
import { createLatch, startRecordingUpstream, type Latch, type RecordingUpstream } from '../helpers/upstream.js';
import { get, startAuthgate, type AuthgateProcess } from './process.js';

/** SPEC §12 in a real `authgate start` process: hot reload (file change, SIGHUP) and draining on SIGTERM. */

let idpA: Idp;
let idpB: Idp;
let upstream: RecordingUpstream;
let running: AuthgateProcess | undefined;
/** While set, the upstream holds `/slow` requests in flight until the test releases it. */
let slowRequests: Latch | undefined;

beforeAll(async () => {
  [idpA, idpB] = await Promise.all([startIdp({ keys: ['rsa'] }), startIdp({ keys: ['rsa'] })]);
  upstream = await startRecordingUpstream((seen) =>
    seen.url.startsWith('/slow') && slowRequests !== undefined ? { holdUntil: slowRequests } : undefined,
  );
});
afterEach(async () => {
  slowRequests?.release();
  slowRequests = undefined;
  await running?.kill();
  running = undefined;
});
afterAll(async () => {
  await upstream?.close();
  await idpA?.close();
  await idpB?.close();
});

interface Variant {
  readonly route: string;
  readonly audienceA: string;
  readonly jwksMaxAgeB: string;
  readonly grace?: string;
  readonly broken?: boolean;
}

function configYaml(v: Variant): string {
  return `
version: 1
server:
  listen: 127.0.0.1:0
  shutdown_grace: ${v.grace ?? '5s'}
${v.broken ? '  bogus_setting: true' : ''}
admin: { listen: 127.0.0.1:0 }
logging: { level: info, access_log: false }
issuers:
  a:
    issuer: ${idpA.issuer}
    jwks_uri: ${idpA.jwksUri}
    audiences: [${v.audienceA}]
    algorithms: [RS256]
  b:
    issuer: ${idpB.issuer}
    jwks_uri: ${idpB.jwksUri}
    audiences: [${idpB.audience}]
    algorithms: [RS256]
    jwks_cache: { max_age: ${v.jwksMaxAgeB} }
upstreams:
  api: { url: ${upstream.url}, timeout: 10s }
routes:
  - name: ${v.route.slice(1)}
    match: { path: ${v.route} }
    upstream: api
    auth: none
  - name: secure
    match: { path: /secure }
    upstream: api
`;
}

/**
 * A directory laid out like a Kubernetes ConfigMap volume: `gateway.yaml` → `..data/gateway.yaml`, and an update
 * swaps the `..data` symlink atomically, so the file itself never changes in place.
 */
async function configMapVolume(first: string): Promise<{ file: string; swap(text: string): Promise<string> }> {
  const root = await mkdtemp(join(tmpdir(), 'authgate-configmap-'));
  let version = 0;
  const writeVersion = async (text: string): Promise<string> => {
    const dir = join(root, `..v${++version}`);
    await mkdir(dir);
    await writeFile(join(dir, 'gateway.yaml'), text);
    return dir;
  };
  await symlink(await writeVersion(first), join(root, '..data'));
  await symlink(join('..data', 'gateway.yaml'), join(root, 'gateway.yaml'));
  return {
    file: join(root, 'gateway.yaml'),
    async swap(text) {
      const dir = await writeVersion(text);
      await symlink(dir, join(root, '..data_tmp'));
      await rename(join(root, '..data_tmp'), join(root, '..data'));
      return join(dir, 'gateway.yaml');
    },
  };
}

const countOf = (process: AuthgateProcess, msg: string): number => process.logs.filter((line) => line.msg === msg).length;

describe('hot reload', () => {
  it('applies a new config on file change and SIGHUP, keeps serving through a broken file, and keeps unchanged issuers\' keys', async () => {
    const v1: Variant = { route: '/one', audienceA: idpA.audience, jwksMaxAgeB: '10m' };
    const volume = await configMapVolume(configYaml({ ...v1, route: '/slow' }));
    running = await startAuthgate(volume.file);
    const gw = running;
    expect(await get(gw.url, '/slow')).toBe(200);
    const fetchesA = idpA.jwksFetches;
    const fetchesB = idpB.jwksFetches;
    expect(await get(gw.url, '/secure', { authorization: `Bearer ${idpA.sign()}` })).toBe(200);

    // A request in flight on the old config finishes on it, after the new one took over.
    const seenBefore = upstream.seen.length;
    slowRequests = createLatch();
    const inFlight = get(gw.url, '/slow');
    await expect.poll(() => upstream.seen.length).toBe(seenBefore + 1);

    // ConfigMap-style update: the route changes, issuer a's audience (not its key settings), issuer b's key settings.
    await volume.swap(configYaml({ route: '/two', audienceA: 'https://new.test', jwksMaxAgeB: '5m' }));
    await gw.waitForLog((line) => line.msg === 'configuration reloaded');
    slowRequests.release();
    expect(await inFlight).toBe(200);
    expect(await get(gw.url, '/slow')).toBe(404);
    expect(await get(gw.url, '/two')).toBe(200);
    expect(await get(gw.url, '/secure', { authorization: `Bearer ${idpA.sign()}` })).toBe(401);
    expect(await get(gw.url, '/secure', { authorization: `Bearer ${idpA.sign({ aud: 'https://new.test' })}` })).toBe(200);
    expect(idpA.jwksFetches).toBe(fetchesA);
    expect(idpB.jwksFetches).toBe(fetchesB + 1);

    // A broken file is refused with its file:line:col problems; the running config stays.
    const brokenFile = await volume.swap(configYaml({ route: '/three', audienceA: idpA.audience, jwksMaxAgeB: '5m', broken: true }));
    const refused = await gw.waitForLog((line) => line.msg === 'config reload refused; keeping the running config');
    expect(refused.problems).toEqual([expect.stringMatching(/gateway\.yaml:\d+:\d+: server\.bogus_setting: /)]);
    expect(await get(gw.url, '/two')).toBe(200);
    expect(await get(gw.url, '/three')).toBe(404);

    // Fixed in place inside the current ..data target: no event in the watched directory, so SIGHUP applies it.
    await writeFile(brokenFile, configYaml({ route: '/three', audienceA: idpA.audience, jwksMaxAgeB: '5m' }));
    gw.child.kill('SIGHUP');
    await expect.poll(() => countOf(gw, 'configuration reloaded')).toBe(2);
    expect(await get(gw.url, '/three')).toBe(200);
    expect(await get(gw.url, '/two')).toBe(404);
  });
});

describe('shutdown', () => {
  it('on SIGTERM turns readiness 503, stops accepting, finishes every in-flight request with 200 and exits 0', async () => {
    const volume = await configMapVolume(configYaml({ route: '/slow', audienceA: idpA.audience, jwksMaxAgeB: '10m' }));
    running = await startAuthgate(volume.file);
    const gw = running;
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(200);

    const seenBefore = upstream.seen.length;
    slowRequests = createLatch();
    const inFlight = Array.from({ length: 20 }, (_, i) => get(gw.url, `/slow?n=${i}`));
    await expect.poll(() => upstream.seen.length, { timeout: 5_000 }).toBe(seenBefore + 20);

    gw.child.kill('SIGTERM');
    await gw.waitForLog((line) => line.msg === 'draining');
    const readiness = await fetch(`${gw.adminUrl}/readyz`);
    expect(readiness.status).toBe(503);
    expect(await readiness.json()).toMatchObject({ checks: { config: 'draining' } });
    await expect(get(gw.url, '/slow')).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    // Still running while its 20 requests are held upstream; it exits only after they have been answered.
    expect(gw.child.exitCode).toBe(null);
    slowRequests.release();
    expect(await Promise.all(inFlight)).toEqual(Array.from({ length: 20 }, () => 200));
    expect(await gw.exited).toBe(0);
  });
});
