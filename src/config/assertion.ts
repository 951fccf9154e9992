import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isSeq } from 'yaml';
import { unusableKeyReason } from '../assertion/keys.js';
import { MINUTE, SECOND } from './duration.js';
import { existingFile } from './files.js';
import type { Reader, Slot } from './reader.js';
import type { AssertionConfig, IdentityField } from './types.js';
import { isToken } from './values.js';

const DEFAULT_FIELDS = (['subject', 'email', 'roles', 'permissions', 'scopes', 'issuer'] as const).map((kind) => ({
  name: kind,
  field: { kind } satisfies IdentityField,
}));
const MAKE_A_KEY =
  'make one with `openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out assertion.pem` ' +
  '(or `-algorithm ed25519`) and list it as keys: [{ file: assertion.pem }]';

export interface AssertionReadOptions {
  readonly baseDir: string;
  /** Reads one identity field name (`subject`, `claims.<path>`…), recording a problem when it is none. */
  readonly readField: (slot: Slot) => IdentityField | undefined;
  /** Lower-case names the assertion header must not take (identity headers, the gateway's own). */
  readonly takenHeaders: ReadonlySet<string>;
}

/** `identity.assertion`: the signing keys must exist and be keys the gateway signs with, checked at load. */
export function readAssertion(r: Reader, slot: Slot, options: AssertionReadOptions): AssertionConfig | undefined {
  const s = r.section(slot, ['header', 'keys', 'issuer', 'ttl', 'fields']);
  const headerSlot = s.slot('header');
  const header = r.string(headerSlot) ?? 'X-Authgate-Assertion';
  if (!isToken(header)) r.problem(headerSlot, `"${header}" is not a valid header name`);
  else if (options.takenHeaders.has(header.toLowerCase())) r.problem(headerSlot, `"${header}" is already set by the gateway`);
  const keyFiles = readKeyFiles(r, s.slot('keys'), options.baseDir);
  const ttlMs = r.duration(s.slot('ttl'), { positive: true }) ?? 2 * MINUTE;
  if (ttlMs < 2 * SECOND) r.problem(s.slot('ttl'), 'must be at least 2s (an assertion is reused for half of it)');
  const fieldsSlot = s.slot('fields');
  const fields = s.has('fields')
    ? r.items(fieldsSlot, (item) => {
        const field = options.readField(item);
        return field && { name: r.string(item) as string, field };
      })
    : DEFAULT_FIELDS;
  if (keyFiles === undefined || fields === undefined) return undefined;
  return { header, keyFiles, issuer: r.string(s.slot('issuer')) ?? 'authgate', ttlMs, fields };
}

function readKeyFiles(r: Reader, slot: Slot, baseDir: string): string[] | undefined {
  if (slot.node === undefined || (isSeq(slot.node) && slot.node.items.length === 0)) {
    return r.problem(slot, `a signing key is required: ${MAKE_A_KEY}`);
  }
  return r.items(slot, (item) => {
    const fileSlot = r.section(item, ['file']).slot('file');
    if (!r.required(fileSlot)) return undefined;
    const file = existingFile(r, fileSlot, baseDir);
    if (file === undefined) return r.problem(fileSlot, MAKE_A_KEY);
    const problem = signingKeyProblem(file);
    return problem === undefined ? file : r.problem(fileSlot, problem);
  });
}

/** Why the file cannot sign assertions, or undefined when it holds a private key that can. */
function signingKeyProblem(file: string): string | undefined {
  try {
    return unusableKeyReason(createPrivateKey(readFileSync(file)));
  } catch (error) {
    return `not a PEM private key (${(error as Error).message})`;
  }
}
