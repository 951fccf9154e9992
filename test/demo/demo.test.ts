import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runDemo, type RunningDemo } from '../../src/cli/demo.js';
import { DemoListenError } from '../../src/demo/listen.js';
import { createLogger } from '../../src/observability/log.js';
import type { BrowserSignIn } from '../../src/cli/demo.js';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';

const CONFIG_FILE = resolve(import.meta.dirname, '../../gateway.yaml');
const DEMO_ENV = ['AUTHGATE_LISTEN', 'AUTHGATE_ADMIN_LISTEN', 'AUTHGATE_DEMO_ISSUER', 'AUTHGATE_DEMO_UPSTREAM', 'AUTHGATE_EXTERNAL_URL', 'REDIS_URL'] as const;
const savedEnv = Object.fromEntries(DEMO_ENV.map((name) => [name, process.env[name]]));

/** Every listener on a free loopback port, no Redis. */
function useFreePorts(overrides: Partial<Record<(typeof DEMO_ENV)[number], string>> = {}): void {
  Object.assign(process.env, {
    AUTHGATE_LISTEN: '127.0.0.1:0',
    AUTHGATE_ADMIN_LISTEN: '127.0.0.1:0',
    AUTHGATE_DEMO_ISSUER: 'http://127.0.0.1:0',
    AUTHGATE_DEMO_UPSTREAM: 'http://127.0.0.1:0',
    AUTHGATE_EXTERNAL_URL: '',
    REDIS_URL: '',
    ...overrides,
  });
}

function restoreEnv(): void {
  for (const name of DEMO_ENV) {
    const value = savedEnv[name];
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
}

function collector(): { stream: Writable; text(): string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

const quiet = createLogger('silent');

/** Splits a printed shell line into words; the demo only ever quotes with single quotes. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  for (const match of line.matchAll(/'([^']*)'|(\S+)/g)) words.push(match[1] ?? match[2] ?? '');
  return words;
}

interface CurlCall {
  readonly expect: number;
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

/** The printed examples: a `# STATUS: …` comment, then the curl line it describes. */
function printedCurls(output: string): CurlCall[] {
  const lines = output.split('\n');
  const calls: CurlCall[] = [];
  lines.forEach((line, index) => {
    const status = /^# (\d{3}): /.exec(line)?.[1];
    const curl = lines[index + 1];
    if (status === undefined || curl === undefined || !curl.startsWith('curl ')) return;
    const words = shellWords(curl);
    const headers: Record<string, string> = {};
    let method = 'GET';
    let body: string | undefined;
    let url = '';
    for (let i = 1; i < words.length; i++) {
      const word = words[i] ?? '';
      if (word === '-X') method = words[++i] ?? '';
      else if (word === '-H') {
        const [name = '', ...value] = (words[++i] ?? '').split(': ');
        headers[name] = value.join(': ');
      } else if (word === '-d') body = words[++i];
      else if (word.startsWith('http')) url = word;
      else expect(['-sS', '-i']).toContain(word);
    }
    calls.push({ expect: Number(status), method, url, headers, body });
  });
  return calls;
}

async function refused(url: string): Promise<boolean> {
  return fetch(url).then(
    () => false,
    (error: unknown) => (error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED',
  );
}

describe('authgate demo', () => {
  let demo: RunningDemo;
  let output: string;

  beforeAll(async () => {
    useFreePorts();
    const stdout = collector();
    demo = await runDemo({ configFile: CONFIG_FILE, stdout: stdout.stream, logger: quiet });
    output = stdout.text();
  });

  afterAll(async () => {
    await demo?.close();
    restoreEnv();
  });

  it('prints every URL and both tokens', () => {
    for (const url of [demo.gatewayUrl, demo.adminUrl, demo.issuerUrl, demo.upstreamUrl]) expect(output).toContain(url);
    expect(output).toContain(`ALICE_TOKEN=${demo.tokens.alice}`);
    expect(output).toContain(`BOB_TOKEN=${demo.tokens.bob}`);
  });

  it('leaves the process environment as it was (the real addresses go to the config loader only)', () => {
    expect(process.env['AUTHGATE_DEMO_ISSUER']).toBe('http://127.0.0.1:0');
    expect(process.env['AUTHGATE_DEMO_UPSTREAM']).toBe('http://127.0.0.1:0');
    expect(demo.issuerUrl).not.toBe('http://127.0.0.1:0');
  });

  it('prints curl lines that get the status they promise, covering 200, 401 and 403 and a POST', async () => {
    const calls = printedCurls(output);
    expect(new Set(calls.map((call) => call.expect))).toEqual(new Set([200, 401, 403]));
    expect(calls.some((call) => call.method === 'POST' && call.expect === 200)).toBe(true);
    expect(calls.some((call) => call.url.includes('/api/public/'))).toBe(true);
    for (const call of calls) {
      expect(call.url.startsWith(demo.gatewayUrl)).toBe(true);
      const response = await fetch(call.url, { method: call.method, headers: call.headers, body: call.body });
      await response.arrayBuffer();
      expect({ call: `${call.method} ${call.url} ${call.headers.Authorization ?? ''}`, status: response.status }).toEqual({
        call: `${call.method} ${call.url} ${call.headers.Authorization ?? ''}`,
        status: call.expect,
      });
    }
  });

  it('the upstream sees alice as the gateway describes her, never the client-sent identity', async () => {
    const response = await fetch(`${demo.gatewayUrl}/api/admin/users`, {
      headers: { authorization: `Bearer ${demo.tokens.alice}`, 'x-user-id': 'mallory', 'x-user-roles': 'admin' },
    });
    expect(response.status).toBe(200);
    const echoed = (await response.json()) as { method: string; path: string; headers: Record<string, string> };
    expect(echoed).toMatchObject({ method: 'GET', path: '/api/admin/users' });
    expect(echoed.headers).toMatchObject({
      'x-user-id': 'alice',
      'x-user-email': 'alice@example.com',
      'x-user-roles': 'admin,user',
      'x-user-permissions': 'read,write',
      'x-auth-issuer': demo.issuerUrl,
    });
    expect(echoed.headers.authorization).toBeUndefined();
  });

  it('no token on a protected route is a bare Bearer challenge', async () => {
    const response = await fetch(`${demo.gatewayUrl}/api/things`);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="authgate"');
  });

  it('mints RFC 9068 access tokens that verify against the dev issuer JWKS', async () => {
    const jwks = createRemoteJWKSet(new URL(`${demo.issuerUrl}/jwks.json`));
    for (const [name, roles, permissions] of [
      ['alice', ['admin', 'user'], ['read', 'write']],
      ['bob', ['user'], ['read']],
    ] as const) {
      const token = demo.tokens[name];
      expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
      const { payload } = await jwtVerify(token, jwks, { issuer: demo.issuerUrl, audience: 'authgate-demo', typ: 'at+jwt' });
      expect(payload).toMatchObject({ sub: name, roles, permissions });
      expect(typeof payload.jti).toBe('string');
      const lifetime = (payload.exp ?? 0) - (payload.iat ?? 0);
      expect(output).toContain(`valid ${lifetime / 3600}h`);
    }
    expect(demo.tokens.alice).not.toBe(demo.tokens.bob);
  });

  it('serves a discovery document whose issuer is the tokens\' iss', async () => {
    const discovery = (await (await fetch(`${demo.issuerUrl}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery).toMatchObject({ issuer: demo.issuerUrl, jwks_uri: `${demo.issuerUrl}/jwks.json` });
  });
});

describe('authgate demo start-up and shutdown', () => {
  let blocker: Server | undefined;

  afterEach(async () => {
    restoreEnv();
    await new Promise<void>((done) => (blocker ? blocker.close(() => done()) : done()));
    blocker = undefined;
  });

  async function occupiedPort(): Promise<number> {
    blocker = createServer();
    await new Promise<void>((done) => blocker?.listen(0, '127.0.0.1', done));
    return (blocker.address() as AddressInfo).port;
  }

  it('close() stops every listener', async () => {
    useFreePorts();
    const demo = await runDemo({ configFile: CONFIG_FILE, stdout: collector().stream, logger: quiet });
    await demo.close();
    for (const url of [demo.gatewayUrl, demo.adminUrl, demo.issuerUrl, demo.upstreamUrl]) expect(await refused(url)).toBe(true);
  });

  it.each([
    ['AUTHGATE_DEMO_ISSUER', (port: number) => `http://127.0.0.1:${port}`, /dev issuer: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\); set AUTHGATE_DEMO_ISSUER/],
    ['AUTHGATE_DEMO_UPSTREAM', (port: number) => `http://127.0.0.1:${port}`, /echo upstream: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\); set AUTHGATE_DEMO_UPSTREAM/],
    ['AUTHGATE_LISTEN', (port: number) => `127.0.0.1:${port}`, /gateway: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\); set AUTHGATE_LISTEN/],
    ['AUTHGATE_ADMIN_LISTEN', (port: number) => `127.0.0.1:${port}`, /admin listener: cannot listen on 127\.0\.0\.1:\d+ \(EADDRINUSE\); set AUTHGATE_ADMIN_LISTEN/],
  ] as const)('a taken port for %s fails cleanly and says which variable moves it', async (variable, value, message) => {
    useFreePorts({ [variable]: value(await occupiedPort()) });
    const attempt = runDemo({ configFile: CONFIG_FILE, stdout: collector().stream, logger: quiet });
    await expect(attempt).rejects.toBeInstanceOf(DemoListenError);
    await expect(attempt).rejects.toThrow(message);
  });
});

describe('demo echo upstream over WebSocket', () => {
  it('answers an upgrade through the gateway with the request it received', async () => {
    useFreePorts();
    const demo = await runDemo({ configFile: CONFIG_FILE, stdout: collector().stream, logger: quiet });
    try {
      const greeting = await new Promise<string>((done, fail) => {
        const req = request(`${demo.gatewayUrl}/ws`, {
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
            authorization: `Bearer ${demo.tokens.bob}`,
          },
        });
        req.on('upgrade', (res, socket, head) => {
          expect(res.statusCode).toBe(101);
          let frames = head;
          const finish = (): void => {
            // Unmasked text frame with a 16-bit length: 0x81, 126, length (2 bytes), payload.
            if (frames.length < 4) return;
            const length = frames.readUInt16BE(2);
            if (frames.length < 4 + length) return;
            socket.removeAllListeners('data');
            // A masked close frame with an empty payload; the echo answers it and hangs up.
            socket.write(Buffer.from([0x88, 0x80, 0, 0, 0, 0]));
            socket.resume();
            socket.on('close', () => done(frames.subarray(4, 4 + length).toString('utf8')));
          };
          socket.on('data', (chunk: Buffer) => {
            frames = Buffer.concat([frames, chunk]);
            finish();
          });
          finish();
        });
        req.on('response', (res) => fail(new Error(`no upgrade: ${res.statusCode}`)));
        req.on('error', fail);
        req.end();
      });
      expect(JSON.parse(greeting)).toMatchObject({ method: 'GET', path: '/ws', headers: { 'x-user-id': 'bob', upgrade: 'websocket' } });
    } finally {
      await demo.close();
      restoreEnv();
    }
  });
});

describe('authgate demo in a browser', () => {
  let demo: RunningDemo;
  let output: string;
  let browser: TestBrowser;
  let urls: BrowserSignIn;

  beforeAll(async () => {
    useFreePorts();
    const stdout = collector();
    demo = await runDemo({ configFile: CONFIG_FILE, stdout: stdout.stream, logger: quiet });
    output = stdout.text();
    urls = demo.browser as BrowserSignIn;
    browser = await launchBrowser();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await demo?.close();
    restoreEnv();
  });

  /** Opens `url` as a fresh visitor, picks `user` on the dev issuer's page, and lands back on `url`. */
  async function signedIn(user: 'alice' | 'bob', url: string): Promise<Page> {
    await browser.context.clearCookies();
    const page = await browser.context.newPage();
    const picker = await page.goto(url);
    expect(new URL(page.url()).origin).toBe(demo.issuerUrl);
    expect(picker?.headers()['content-security-policy']).toMatch(/^default-src 'none';/);
    expect(await page.locator('script').count()).toBe(0);
    await page.click(`button[value="${user}"]`);
    await page.waitForURL(url);
    return page;
  }

  async function echoed(page: Page): Promise<{ path: string; headers: Record<string, string> }> {
    return JSON.parse((await page.textContent('body')) ?? '{}') as { path: string; headers: Record<string, string> };
  }

  it('prints where to sign in, on the gateway the demo runs', () => {
    expect(new URL(urls.appUrl).origin).toBe(new URL(demo.gatewayUrl).origin);
    expect(output).toContain(`Sign in with a browser (pick alice or bob; no passwords): ${urls.appUrl}`);
    expect(output).toContain(`${urls.adminUrl} needs role admin`);
    expect(output).toContain(`sign out: ${urls.signOutUrl}`);
  });

  it('alice signs in, sees the identity headers the upstream got, passes the admin rule and signs out', async () => {
    const page = await signedIn('alice', urls.appUrl);
    const first = await echoed(page);
    expect(first.path).toBe('/app/');
    expect(first.headers).toMatchObject({ 'x-user-id': 'alice', 'x-user-email': 'alice@example.com', 'x-user-roles': 'admin,user', 'x-auth-issuer': demo.issuerUrl });
    expect(first.headers.cookie ?? '').not.toContain('authgate');
    expect((await page.goto(urls.adminUrl))?.status()).toBe(200);
    expect((await echoed(page)).path).toBe('/app/admin/');

    await page.goto(urls.signOutUrl);
    // Signed out through the dev issuer and back to /app/, which sends a browser without a session to sign in.
    expect(new URL(page.url()).origin).toBe(demo.issuerUrl);
    expect(await page.locator('button[value="bob"]').count()).toBe(1);
    expect((await browser.context.cookies(demo.gatewayUrl)).map((cookie) => cookie.name)).not.toContain('authgate');
    await page.close();
  });

  it('bob signs in, and the admin route gives him a 403 page naming him, with a sign-out link', async () => {
    const page = await signedIn('bob', urls.appUrl);
    expect((await echoed(page)).headers).toMatchObject({ 'x-user-id': 'bob', 'x-user-roles': 'user' });
    const refused = await page.goto(urls.adminUrl);
    expect(refused?.status()).toBe(403);
    expect(refused?.headers()['content-type']).toMatch(/^text\/html/);
    expect(await page.textContent('body')).toContain('bob@example.com');
    await page.click('a[href$="/sign_out"]');
    await page.waitForLoadState();
    expect((await browser.context.cookies(demo.gatewayUrl)).map((cookie) => cookie.name)).not.toContain('authgate');
    // Signed out through the dev issuer, back to the demo's public home page.
    expect(page.url()).toBe(`${demo.gatewayUrl}/`);
    expect((await echoed(page)).path).toBe('/');
    await page.close();
  });
});
