# Monthly budget per environment type, in USD: a plan whose environment would cost more is
# denied; above 80 % of the budget it warns. Types missing from the table have no budget.
# Layer organisation, stage plan.
package stackyard

import rego.v1

budget_currency := "USD"

monthly_budgets := {
	"development": 100,
	"ephemeral": 25,
	"staging": 200,
	"production": 1000,
}

warn_ratio := 0.8

limit := monthly_budgets[input.environment.type]

total := to_number(input.cost.monthly_total)

in_budget_currency if input.cost.currency == budget_currency

deny contains {"msg": msg, "rule": "over-budget"} if {
	in_budget_currency
	total > limit
	msg := sprintf(
		"%s would cost %s %s a month, over the %s budget of %d %s (delta %s)",
		[
			input.environment.name, input.cost.monthly_total, budget_currency,
			input.environment.type, limit, budget_currency, input.cost.delta,
		],
	)
}

warn contains {"msg": msg, "rule": "near-budget"} if {
	in_budget_currency
	total > limit * warn_ratio
	total <= limit
	msg := sprintf(
		"%s would cost %s %s a month, %d %% of the %s budget of %d %s",
		[
			input.environment.name, input.cost.monthly_total, budget_currency,
			floor((total * 100) / limit), input.environment.type, limit, budget_currency,
		],
	)
}

# A cost in another currency (or "mixed") cannot be held against a USD budget.
warn contains {"msg": msg, "rule": "budget-currency"} if {
	limit
	is_string(input.cost.currency)
	not in_budget_currency
	msg := sprintf(
		"%s's cost is in %s, so the %s budget (%s) was not checked",
		[input.environment.name, input.cost.currency, input.environment.type, budget_currency],
	)
}
