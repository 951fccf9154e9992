import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.js';

/** Whatever a log call is handed, the credentials in it come out redacted: tokens, cookies and DPoP proofs. */
describe('log redaction', () => {
  it.each([
    ['a request\'s headers', { headers: { authorization: 'Bearer secret-token', cookie: 'sid=secret-cookie', dpop: 'secret.proof.jws' } }],
    ['fields at the top', { token: 'secret-token', authorization: 'Bearer secret-token', cookie: 'sid=secret-cookie', dpop: 'secret.proof.jws' }],
    ['fields one level down', { request: { token: 'secret-token', authorization: 'Bearer x-secret', cookie: 'secret-cookie', dpop: 'secret.proof' } }],
  ])('redacts %s', (_label, fields) => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    createLogger('info', sink).info(fields, 'a line');
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toMatch(/secret/);
    expect(lines[0]).toContain('[redacted]');
  });
});
