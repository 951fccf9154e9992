/**
 * Route `require` rules (SPEC §5). Every key given must hold. Comparison is exact and case-sensitive:
 * `readwrite` is not `read`, `Admin` is not `admin`, `true` is not `"true"`.
 *
 * The lists involved are a handful of entries on both sides, so linear `includes` beats building Sets:
 * it allocates nothing per request. Strings for logs and `explain` are built only when they are needed.
 */
import type { Identity } from '../../identity/identity.js';
import type { ClaimValue, ListRule, RequireRules } from '../../config/types.js';
import { readClaim } from '../../identity/claim-path.js';
import type { Authorizer, MechanismType } from '../../chain/kinds.js';

export type RuleName = 'roles' | 'permissions' | 'scopes' | 'claims';

export type RuleOutcome =
  | { readonly ok: true }
  | {
      readonly ok: false;
      readonly rule: RuleName;
      /** For logs and `authgate explain` only, never for clients: e.g. `needs any of roles [admin]; has [user]`. */
      readonly reason: string;
      /** Set when a scope rule failed, for `WWW-Authenticate: Bearer … scope="…"`. */
      readonly requiredScopes?: readonly string[];
    };

export interface RuleExplanation {
  readonly rule: RuleName;
  readonly ok: boolean;
  readonly detail: string;
}

type ListRuleName = Exclude<RuleName, 'claims'>;
const LIST_RULES: readonly ListRuleName[] = ['roles', 'permissions', 'scopes'];

const PASS: RuleOutcome = Object.freeze({ ok: true });

/** `any` of an empty list never holds and `all` of it always does; the config loader refuses empty lists. */
function listHolds(rule: ListRule, has: readonly string[]): boolean {
  if (rule.mode === 'any') {
    for (const value of rule.values) if (has.includes(value)) return true;
    return false;
  }
  for (const value of rule.values) if (!has.includes(value)) return false;
  return true;
}

/** Equal, or a member when the claim is an array. Strict equality keeps `true` apart from `"true"` and `1` from `"1"`. */
function claimHolds(actual: unknown, expected: ClaimValue): boolean {
  return Array.isArray(actual) ? actual.includes(expected) : actual === expected;
}

const MAX_LISTED = 20;
const MAX_VALUE_TEXT = 200;

function listText(values: readonly string[]): string {
  const shown = values.length > MAX_LISTED ? values.slice(0, MAX_LISTED) : values;
  const more = values.length > MAX_LISTED ? `, …+${values.length - MAX_LISTED} more` : '';
  return `[${shown.join(', ')}${more}]`;
}

function valueText(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > MAX_VALUE_TEXT ? `${text.slice(0, MAX_VALUE_TEXT)}…` : text;
}

function listDetail(name: ListRuleName, rule: ListRule, has: readonly string[]): string {
  return `needs ${rule.mode} of ${name} ${listText(rule.values)}; has ${listText(has)}`;
}

function claimDetail(path: string, expected: ClaimValue, actual: unknown): string {
  const relation = Array.isArray(actual) ? 'contain' : 'equal';
  return `claim ${path} must ${relation} ${valueText(expected)}; has ${valueText(actual)}`;
}

export function evaluateRules(rules: RequireRules, identity: Identity): RuleOutcome {
  for (const name of LIST_RULES) {
    const rule = rules[name];
    if (rule === undefined || listHolds(rule, identity[name])) continue;
    const reason = listDetail(name, rule, identity[name]);
    return name === 'scopes' ? { ok: false, rule: name, reason, requiredScopes: rule.values } : { ok: false, rule: name, reason };
  }
  if (rules.claims !== undefined) {
    for (const path in rules.claims) {
      const expected = rules.claims[path] as ClaimValue;
      const actual = readClaim(identity.claims, path);
      if (!claimHolds(actual, expected)) {
        return { ok: false, rule: 'claims', reason: claimDetail(path, expected, actual) };
      }
    }
  }
  return PASS;
}

/** Every configured rule with its verdict, in evaluation order (one entry per required claim). */
export function explainRules(rules: RequireRules, identity: Identity): RuleExplanation[] {
  const explanations: RuleExplanation[] = [];
  for (const name of LIST_RULES) {
    const rule = rules[name];
    if (rule === undefined) continue;
    const ok = listHolds(rule, identity[name]);
    explanations.push({ rule: name, ok, detail: listDetail(name, rule, identity[name]) });
  }
  if (rules.claims !== undefined) {
    for (const path in rules.claims) {
      const expected = rules.claims[path] as ClaimValue;
      const actual = readClaim(identity.claims, path);
      const ok = claimHolds(actual, expected);
      explanations.push({ rule: 'claims', ok, detail: claimDetail(path, expected, actual) });
    }
  }
  return explanations;
}

/** The registry's `require`: a route's `require:` rules, compiled once per route. */
export const requireRules: MechanismType<Authorizer> = {
  create() {
    return {
      forRoute(route) {
        const rules = route.require;
        return rules === undefined ? undefined : { authorize: (identity) => evaluateRules(rules, identity) };
      },
    };
  },
};
