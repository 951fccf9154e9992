export { AssertionSigner, type AssertionIdentity, type AssertionSignerOptions } from './signer.js';
export { KeyFileError, loadSigningKey, loadSigningKeys, publicJwks, signingKeyFromPem, type SigningKey } from './keys.js';
export {
  assertionMiddleware,
  createAssertionVerifier,
  DEFAULT_ASSERTION_HEADER,
  type AssertionClaims,
  type AssertionVerifier,
  type AssertionVerifierOptions,
} from './verifier.js';
