import { describe, expect, it } from 'vitest';
import { findDpopCredential } from '../../src/mechanisms/dpop/credential.js';

const PROOF = 'eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJqdGkiOiJ4In0.c2lnbmF0dXJl';

describe('Authorization: DPoP credentials with one DPoP header', () => {
  it('finds the token and the proof', () => {
    expect(findDpopCredential({ authorization: ['DPoP abc.def-ghi_~+/=='], dpop: [PROOF] })).toEqual({ ok: true, credential: { token: 'abc.def-ghi_~+/==', proof: PROOF } });
    expect(findDpopCredential({ authorization: ['dpop   tok'], dpop: [PROOF] })).toEqual({ ok: true, credential: { token: 'tok', proof: PROOF } });
  });

  it.each([
    ['no Authorization header', {}],
    ['the Bearer scheme (even with a DPoP header)', { authorization: ['Bearer tok'], dpop: [PROOF] }],
    ['a scheme that merely starts with DPoP', { authorization: ['DPoPx tok'], dpop: [PROOF] }],
  ])('is not concerned with %s', (_name, headers) => {
    expect(findDpopCredential(headers)).toEqual({ ok: true, credential: undefined });
  });

  it.each([
    ['two DPoP headers', { authorization: ['DPoP tok'], dpop: [PROOF, PROOF] }, 'invalid_request', 'more than one DPoP header'],
    ['two Authorization headers', { authorization: ['DPoP tok', 'DPoP tok'], dpop: [PROOF] }, 'invalid_request', 'more than one Authorization header'],
    ['no token after the scheme', { authorization: ['DPoP'], dpop: [PROOF] }, 'invalid_request', 'malformed'],
    ['something after the token', { authorization: ['DPoP tok extra'], dpop: [PROOF] }, 'invalid_request', 'malformed'],
    ['no DPoP header', { authorization: ['DPoP tok'] }, 'invalid_dpop_proof', 'no DPoP header'],
    ['a DPoP header that is two proofs joined', { authorization: ['DPoP tok'], dpop: [`${PROOF}, ${PROOF}`] }, 'invalid_dpop_proof', 'compact JWS'],
    ['a token over 8 KiB', { authorization: [`DPoP ${'a'.repeat(8193)}`], dpop: [PROOF] }, 'invalid_token', 'token_too_long'],
  ])('refuses %s', (_name, headers, error, reason) => {
    expect(findDpopCredential(headers)).toEqual({ ok: false, error, reason: expect.stringContaining(reason) as unknown });
  });
});
