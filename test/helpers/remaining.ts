import { expect } from 'vitest';

/**
 * What an instance's RateLimit-Remaining must be, over the answers one instance gave in order: it counts down, is
 * never below what the instance admits afterwards, and never above the limit less what it admitted so far.
 */
export function expectTruthfulRemaining(answers: readonly { readonly remaining: number; readonly admitted: boolean }[], limit: number): void {
  let admittedSoFar = 0;
  let admittedLater = answers.filter((answer) => answer.admitted).length;
  answers.forEach((answer, i) => {
    if (answer.admitted) {
      admittedSoFar += 1;
      admittedLater -= 1;
    }
    if (i > 0) expect(answer.remaining).toBeLessThanOrEqual((answers[i - 1] as { remaining: number }).remaining);
    expect(answer.remaining).toBeGreaterThanOrEqual(admittedLater);
    expect(answer.remaining).toBeLessThanOrEqual(limit - admittedSoFar);
  });
}
