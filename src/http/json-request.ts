import { request } from 'undici';
import { headerValue } from './headers.js';

export interface FetchLimits {
  /** Deadline for headers and body together. */
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = { timeoutMs: 5000, maxBytes: 1024 * 1024 };

/**
 * An expected failure of an identity provider's endpoint (unreachable, bad status, wrong shape, a discovery document
 * naming another issuer): logged as a one-line reason, never with a stack trace.
 */
export class FetchError extends Error {
  override readonly name = 'FetchError';
}

/**
 * A guarded request to an identity provider that answers JSON (discovery, JWKS, token introspection): one overall
 * deadline for headers and body, a size cap, no redirects (the configured URL is the trust anchor), status 200 and
 * a JSON content type only. Failures are FetchErrors with a one-line reason that never includes what was sent
 * (the request may carry a client secret).
 */
export interface JsonRequest {
  readonly method: 'GET' | 'POST';
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

export interface JsonResponse {
  readonly body: unknown;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

const JSON_CONTENT_TYPE = /^application\/(?:[\w.+-]+\+)?json(?:\s*;|$)/i;

export async function requestJson(url: string, init: JsonRequest, limits: FetchLimits): Promise<JsonResponse> {
  const signal = AbortSignal.timeout(limits.timeoutMs);
  let response: Awaited<ReturnType<typeof request>>;
  try {
    response = await request(url, { method: init.method, headers: init.headers, body: init.body, signal });
  } catch (error) {
    throw new FetchError(signal.aborted ? `timed out after ${limits.timeoutMs} ms` : `request failed: ${(error as Error).message}`);
  }
  const { statusCode, headers, body } = response;
  try {
    if (statusCode >= 300 && statusCode < 400) throw new FetchError(`redirect (${statusCode}) not followed`);
    if (statusCode !== 200) throw new FetchError(`status ${statusCode}`);
    if (!JSON_CONTENT_TYPE.test(headerValue(headers['content-type']) ?? '')) throw new FetchError('content-type is not JSON');
    return { body: parseJson(await readCapped(body as AsyncIterable<Buffer>, headers, limits.maxBytes)), headers };
  } catch (error) {
    // Destroying an unfinished undici body emits an abort error; nobody else is listening for it.
    body.on('error', () => undefined);
    body.destroy();
    if (error instanceof FetchError) throw error;
    throw new FetchError(signal.aborted ? `timed out after ${limits.timeoutMs} ms` : `read failed: ${(error as Error).message}`);
  }
}

async function readCapped(body: AsyncIterable<Buffer>, headers: JsonResponse['headers'], maxBytes: number): Promise<Buffer> {
  const tooLarge = (): FetchError => new FetchError(`body larger than ${maxBytes} bytes`);
  if (Number(headerValue(headers['content-length'])) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new FetchError('body is not valid JSON');
  }
}
