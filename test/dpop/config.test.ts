import { describe, expect, it } from 'vitest';
import { readDpop } from '../../src/config/dpop.js';
import { readSnippet } from '../helpers/config-snippet.js';

const read = (body: string, env: NodeJS.ProcessEnv = {}) =>
  readSnippet(`dpop: ${body}`, (r, root) => readDpop(r, r.section(root, ['dpop']).slot('dpop')), env);

describe('issuers.<name>.dpop', () => {
  it('reads the documented example', () => {
    const { value, problems } = read('{ mode: required, max_age: 30s, algorithms: [ES256, EdDSA, PS256], nonce: false }');
    expect(problems).toEqual([]);
    expect(value).toEqual({ mode: 'required', maxAgeMs: 30_000, algorithms: ['ES256', 'EdDSA', 'PS256'], nonceSecret: undefined });
  });

  it('defaults: allowed, 60s, every asymmetric algorithm, no nonce', () => {
    const { value, problems } = read('{}');
    expect(problems).toEqual([]);
    expect(value).toMatchObject({ mode: 'allowed', maxAgeMs: 60_000, nonceSecret: undefined });
    expect(value?.algorithms).toContain('ES256');
    expect(value?.algorithms.some((alg) => alg.startsWith('HS'))).toBe(false);
  });

  it('reads the nonce secret from the environment, kept out of any printout', () => {
    const secret = 'n'.repeat(40);
    const { value, problems } = read('{ nonce: true, nonce_secret: ${DPOP_NONCE_SECRET} }', { DPOP_NONCE_SECRET: secret });
    expect(problems).toEqual([]);
    expect(value?.nonceSecret?.reveal()).toBe(secret);
    expect(JSON.stringify(value)).not.toContain(secret);
  });

  it.each([
    ['an unknown mode', '{ mode: optional }', 'gateway.yaml:1:15: dpop.mode: "optional" is not one of "allowed", "required"'],
    ['HS256', '{ algorithms: [ES256, HS256] }', 'gateway.yaml:1:29: dpop.algorithms[1]: "HS256" cannot sign a DPoP proof: one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, did you mean "RS256"?'],
    ['none', '{ algorithms: [none] }', 'gateway.yaml:1:22: dpop.algorithms[0]: "none" cannot sign a DPoP proof: one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA'],
    ['an empty list', '{ algorithms: [] }', 'gateway.yaml:1:21: dpop.algorithms: must not be empty'],
    ['a zero max_age', '{ max_age: 0s }', 'gateway.yaml:1:18: dpop.max_age: must be longer than 0'],
    ['nonce without a secret', '{ nonce: true }', 'gateway.yaml:1:7: dpop.nonce_secret: required'],
    ['a short nonce secret', '{ nonce: true, nonce_secret: short }', 'gateway.yaml:1:36: dpop.nonce_secret: must be at least 32 bytes (every instance must be given the same one)'],
    ['a nonce secret without nonce', `{ nonce_secret: ${'x'.repeat(32)} }`, 'gateway.yaml:1:9: dpop.nonce_secret: is only used with nonce: true'],
    ['an unknown key', '{ max_ag: 10s }', 'gateway.yaml:1:9: dpop.max_ag: unknown key "max_ag", did you mean "max_age"?'],
  ])('names file:line:col and the key for %s', (_name, body, problem) => {
    expect(read(body).problems).toEqual([problem]);
  });
});
