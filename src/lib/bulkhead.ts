/**
 * At most `maxActive` tasks at once and as many again waiting their turn; past that a task is refused at once.
 * Guards a dependency that each client request may call on its own (an identity provider's endpoint): a flood of
 * distinct requests then costs that dependency a bounded number of calls, and the callers past the bound hear
 * "busy" now instead of holding their client until a deadline.
 */
export class Bulkhead {
  private active = 0;
  /** Resolvers of the waiting tasks' turns, oldest first. */
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly maxActive: number) {}

  /** The task's outcome, or undefined (the task never runs) when as many tasks run and wait as allowed. */
  run<T>(task: () => Promise<T>): Promise<T> | undefined {
    if (this.active < this.maxActive) {
      this.active += 1;
      return this.start(task);
    }
    if (this.waiting.length >= this.maxActive) return undefined;
    return new Promise<void>((resolve) => this.waiting.push(resolve)).then(() => this.start(task));
  }

  private start<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve) => resolve(task())).finally(this.release);
  }

  /** A finished task hands its slot straight to the oldest waiting one, so no newcomer can slip in between. */
  private readonly release = (): void => {
    const next = this.waiting.shift();
    if (next === undefined) this.active -= 1;
    else next();
  };
}
