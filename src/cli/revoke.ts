import { Agent, request } from 'undici';
import { parse, UsageError, type Io } from './io.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090';
const REQUEST_TIMEOUT_MS = 10_000;

type RevokeBody =
  | { jti: string; exp: number; issuer?: string }
  | { subject: string; before?: number; issuer?: string };

/** Turns the command line into the admin API's JSON body, or throws UsageError. */
function revokeBody(argv: string[]): { body: RevokeBody; admin: URL } {
  const { values } = parse(argv, {
    jti: { type: 'string' },
    exp: { type: 'string' },
    subject: { type: 'string' },
    issuer: { type: 'string' },
    before: { type: 'string' },
    admin: { type: 'string' },
  });
  const issuer = values.issuer === undefined ? {} : { issuer: nonEmpty('--issuer', values.issuer) };
  const admin = adminUrl(values.admin ?? DEFAULT_ADMIN_URL);
  if (values.jti !== undefined) {
    if (values.subject !== undefined || values.before !== undefined) {
      throw new UsageError('--jti takes --exp, not --subject or --before');
    }
    if (values.exp === undefined) throw new UsageError('--jti needs --exp (when the token expires, epoch seconds)');
    return { body: { jti: nonEmpty('--jti', values.jti), exp: epochSeconds('--exp', values.exp), ...issuer }, admin };
  }
  if (values.subject !== undefined) {
    if (values.exp !== undefined) throw new UsageError('--subject takes --before, not --exp');
    const before = values.before === undefined ? {} : { before: epochSeconds('--before', values.before) };
    return { body: { subject: nonEmpty('--subject', values.subject), ...before, ...issuer }, admin };
  }
  throw new UsageError('give --jti ID --exp UNIX, or --subject SUB');
}

function nonEmpty(flag: string, value: string): string {
  if (value === '') throw new UsageError(`${flag} must not be empty`);
  return value;
}

function epochSeconds(flag: string, value: string): number {
  const seconds = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(seconds)) throw new UsageError(`${flag} must be a UNIX time in seconds, got "${value}"`);
  return seconds;
}

function adminUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--admin must be a URL, got "${text}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--admin must be an http(s) URL');
  return new URL(`${url.pathname.replace(/\/+$/, '')}/revocations`, url);
}

/** `authgate revoke`: 0 revoked, 1 the admin API refused or could not be reached; a UsageError (main: 2) otherwise. */
export async function runRevoke(argv: string[], out: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const parsed = revokeBody(argv);
  const token = env.AUTHGATE_ADMIN_TOKEN;
  if (token === undefined || token === '') throw new UsageError("set AUTHGATE_ADMIN_TOKEN to the gateway's admin.token");

  const dispatcher = new Agent({ headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
  try {
    const response = await request(parsed.admin, {
      method: 'POST',
      dispatcher,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(parsed.body),
    });
    const text = await response.body.text();
    if (response.statusCode === 201 || response.statusCode === 204) {
      out.stdout.write(`revoked ${summary(parsed.body)}\n`);
      return 0;
    }
    out.stderr.write(`authgate revoke: ${parsed.admin.href} answered ${response.statusCode}: ${errorDescription(text)}\n`);
    return 1;
  } catch (error) {
    out.stderr.write(`authgate revoke: cannot reach the admin API at ${parsed.admin.href}: ${(error as Error).message}\n`);
    return 1;
  } finally {
    await dispatcher.close();
  }
}

function summary(body: RevokeBody): string {
  const issuer = body.issuer === undefined ? 'every issuer' : `issuer ${body.issuer}`;
  if ('jti' in body) return `jti ${body.jti} (${issuer}) until ${new Date(body.exp * 1000).toISOString()}`;
  const before = body.before === undefined ? 'now' : new Date(body.before * 1000).toISOString();
  return `tokens of subject ${body.subject} (${issuer}) issued up to ${before}`;
}

function errorDescription(text: string): string {
  try {
    const body = JSON.parse(text) as { error_description?: unknown; error?: unknown };
    if (typeof body.error_description === 'string') return body.error_description;
  } catch {
    // not the SPEC §7 shape: show what came back
  }
  return text.slice(0, 200) || '(empty body)';
}
