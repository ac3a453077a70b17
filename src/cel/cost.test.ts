/**
 * Cost before evaluation: expressions built to be slow are refused when they are written,
 * ordinary ones pass with room to spare, and the estimate bounds what the evaluators meter.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileCel, costBudget, CelCostLimitError, DATA_LIST_SIZE, DEFAULT_COST_LIMIT } from "./index.js";

const compile = (source: string) => compileCel(source, { variables: ["object", "params"] });

describe("the estimated cost of an expression", () => {
  it("refuses three comprehensions nested over lists from the request, saying why and by how much", () => {
    const result = compile("object.a.all(x, object.b.all(y, object.c.all(z, x + y + z > 0)))");
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.kind).toBe("cost");
    expect(result.error.message).toMatch(/^its estimated cost, \d+, is over the limit of 1000000 for one evaluation \(\d+\.\d times\): comprehensions nested over lists from the request multiply their costs \(each such list is taken to hold up to 100 items\)$/);
  });

  it("accepts one or two levels over the request, the shape of real policies", () => {
    for (const source of [
      "object.spec.containers.all(c, has(c.securityContext) && c.securityContext.runAsNonRoot == true)",
      "object.spec.containers.all(c, !has(c.securityContext.capabilities.add) || c.securityContext.capabilities.add.all(cap, cap in ['NET_BIND_SERVICE']))",
      "object.spec.containers.all(c, params.registries.exists(r, c.image.startsWith(r)))",
    ]) {
      const result = compile(source);
      expect(result.ok, source).toBe(true);
      if (result.ok) expect(result.program.estimatedCost).toBeLessThan(DEFAULT_COST_LIMIT / 2);
    }
  });

  it("counts a list written in the expression by its own size", () => {
    const small = compile("[1, 2, 3].all(x, [4, 5].all(y, [6].all(z, x + y + z > 0)))");
    expect(small.ok).toBe(true);
    if (small.ok) expect(small.program.estimatedCost).toBeLessThan(1000);
  });

  it("bounds what the evaluator meters for lists up to the sizes it assumes", () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.integer(), { maxLength: DATA_LIST_SIZE }), { maxLength: DATA_LIST_SIZE }), (lists) => {
        const result = compile("object.lists.all(l, l.exists(x, x > 5) || l.size() == 0)");
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        const budget = costBudget(Number.MAX_SAFE_INTEGER);
        result.program.evaluate({ object: { lists }, params: null }, budget);
        expect(budget.total - budget.remaining).toBeLessThanOrEqual(result.program.estimatedCost);
      }),
      { numRuns: 50 },
    );
  });
});

describe("a cost budget shared by several evaluations", () => {
  const program = (() => {
    const result = compile("object.items.all(x, object.items.all(y, x + y >= 0))");
    if (!result.ok) throw new Error(result.error.message);
    return result.program;
  })();
  const activation = { object: { items: Array.from({ length: 300 }, (_, i) => i) }, params: null };

  it("takes what each evaluation spends, and stops the one that would go past it, saying the budget is spent", () => {
    const alone = costBudget(Number.MAX_SAFE_INTEGER);
    program.evaluate(activation, alone);
    const once = alone.total - alone.remaining;
    const budget = costBudget(Math.round(once * 1.5));
    expect(program.evaluate(activation, budget)).toBe(true);
    expect(budget.remaining).toBe(budget.total - once);
    expect(() => program.evaluate(activation, budget)).toThrow(CelCostLimitError);
    expect(() => program.evaluate(activation, budget)).toThrow(`the decision's cost budget of ${budget.total} is spent`);
    expect(budget.remaining).toBe(0);
  });

  it("stops the reference evaluator the same way", () => {
    const budget = costBudget(100);
    expect(() => program.evaluateReference(activation, budget)).toThrow("the decision's cost budget of 100 is spent");
  });
});
